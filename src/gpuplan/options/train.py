"""The options of ``gpuplan train``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import (
    IMAGE_OPTIONS,
    check,
    ADVISE,
    CONFIG,
    EXPLAIN,
    FROM,
    JSON,
    LANG,
    MODEL_OPTIONS,
    PLOT,
)
from gpuplan.options.field import Option
from gpuplan.train import config as C
from gpuplan.train.stacks import stack_names
from gpuplan.versions import DEFAULT_TRANSFORMERS

TRAIN = CommandOptions(
    "train",
    help="memory per GPU for training or fine-tuning, and whether it fits",
    description="Per-GPU memory of one steady-state training step: weights, gradients, optimizer states, master "
                "weights, activations, logits, buffers, the phase-aware peak (what torch.cuda.max_memory_allocated() "
                "shows) and the device total.",
    options=(
        *MODEL_OPTIONS,
        JSON,
        EXPLAIN,
        Option("batch", "count", "--batch", default=1, help="micro-batch per GPU (default 1)",
               help_zh="每卡 micro-batch（默认 1）", group="workload"),
        Option(
            "seq", "count", "--seq", default=2048, help="sequence length in tokens (default 2048)",
            help_zh="序列长度，单位 token（默认 2048）", group="workload"
        ),
        Option("target_seq", "count", "--target-seq", default=None,
               help="encoder-decoders (T5): the target (decoder) length in tokens (default: --seq)",
               help_zh="编码器-解码器（T5）：目标（解码器）序列长度，单位 token（默认同 --seq）", group="workload"),
        *IMAGE_OPTIONS,
        Option("grad_accum", "count", "--grad-accum", default=1, help="gradient accumulation steps",
               help_zh="梯度累积步数", group="workload"),
        Option(
            "precision",
            "choice",
            "--precision",
            default="bf16",
            help="bf16: model cast to bf16, states in bf16; amp-*: fp32 params with autocast; mixed-*: half params + "
                 "fp32 master and states (16 B/param); fp32; fp8 (Transformer Engine style)",
            help_zh="bf16：模型转为 bf16，各状态也为 bf16；amp-*：fp32 参数配合 autocast；mixed-*：半精度参数 + fp32 "
                    "主权重和状态（16 B/参数）；fp32；fp8（Transformer Engine 方式）",
            group="workload",
            choices=C.PRECISIONS,
        ),
        Option(
            "stack",
            "choice",
            "--stack",
            default="torch",
            help="the training stack whose defaults apply to every option below not given (default torch: a plain "
            "PyTorch / Hugging Face loop); the assumptions list what it set, with sources",
            help_zh="训练栈：下面未给出的选项都采用它的默认值（默认 torch：普通的 PyTorch / Hugging Face 训练循环）；"
                    "假设中会列出它设置了什么及其来源",
            group="workload",
            choices=stack_names(),
        ),
        Option(
            "framework",
            "choice",
            "--framework",
            help="sharding semantics: torch (PyTorch / Hugging Face, FSDP2 for --zero 3), deepspeed, megatron "
            "(18 B/param) (default: the stack's)",
            help_zh="分片语义：torch（PyTorch / Hugging Face，--zero 3 时为 FSDP2）、deepspeed、megatron（18 B/参数）"
                    "（默认：训练栈的设置）",
            group="workload",
            choices=C.FRAMEWORKS,
        ),
        Option("optimizer", "choice", "--optimizer", help="default: the stack's (adamw)",
               help_zh="默认：训练栈的设置（adamw）", group="workload",
               choices=C.OPTIMIZERS),
        Option(
            "optimizer_impl",
            "choice",
            "--optimizer-impl",
            help="foreach (PyTorch's CUDA default: one extra state-sized buffer in step), fused, for-loop "
            "(default: the stack's)",
            help_zh="foreach（PyTorch 在 CUDA 上的默认实现：step 中多一个与状态同样大小的缓冲区）、fused、for-loop（"
                    "默认：训练栈的设置）",
            group="workload",
            choices=C.OPTIMIZER_IMPLS,
        ),
        Option(
            "optimizer_in_backward",
            "choice",
            "--optimizer-in-backward",
            help="on: each parameter is stepped as soon as its gradient exists (torchtune optimizer_in_bwd), so the "
            "full gradient set never does (default: the stack's, off)",
            help_zh="on：每个参数的梯度一产生就立即更新该参数（torchtune optimizer_in_bwd），因此完整的梯度集合从不同"
                    "时存在（默认：训练栈的设置，off）",
            group="workload",
            choices=("on", "off"),
        ),
        Option(
            "compile",
            "choice",
            "--compile",
            help="on: each decoder layer runs under torch.compile (torchtune compile: True): the compiled layer saves "
            "matmul inputs and outputs for backward and recomputes the cheap pointwise ops (norms, SiLU) (default: "
            "the stack's, off)",
            help_zh="on：每个解码层在 torch.compile 下运行（torchtune compile: True）：编译后的层为反向保存矩阵乘的输入和"
                    "输出，并重算廉价的逐元素运算（归一化、SiLU）（默认：训练栈的设置，off）",
            group="workload",
            choices=("on", "off"),
        ),
        Option(
            "recompute",
            "choice",
            "--recompute",
            help="full = Hugging Face gradient checkpointing; selective = see --selective-policy (default: the "
            "stack's, none)",
            help_zh="full = Hugging Face 的 gradient checkpointing；selective = 见 --selective-policy（默认：训练栈的"
                    "设置，none）",
            group="workload",
            choices=C.RECOMPUTE,
        ),
        Option(
            "selective_policy",
            "choice",
            "--selective-policy",
            help="what --recompute selective recomputes: attention (the attention core, Megatron) or op "
            "(torchtitan's op-level policy: matmul outputs saved, every second one recomputed) (default: the "
            "stack's)",
            help_zh="--recompute selective 重计算什么：attention（注意力核心，Megatron）或 op（torchtitan 的算子级策"
                    "略：保存矩阵乘输出，每隔一个重计算一个）（默认：训练栈的设置）",
            group="workload",
            choices=C.SELECTIVE_POLICIES,
        ),
        Option(
            "recompute_offload",
            "choice",
            "--recompute-offload",
            help="on: with --recompute full each checkpointed layer's input is kept in host memory (Unsloth's "
            "offloaded gradient checkpointing) (default: the stack's, off)",
            help_zh="on：配合 --recompute full，每个检查点层的输入保存在主机内存中（Unsloth 的 offloaded gradient che"
                    "ckpointing）（默认：训练栈的设置，off）",
            group="workload",
            choices=("on", "off"),
        ),
        Option("attention", "choice", "--attention", default="sdpa", group="workload", choices=C.ATTENTIONS),
        Option(
            "model_impl",
            "choice",
            "--model-impl",
            help="whose modelling code runs the layers: hf (transformers), litgpt (litgpt 0.5.3's own GPT module: "
            "fused QKV, K/V expanded to all heads, fp32 RMSNorm output, adapters in the model dtype) or torchtitan "
            "(its Llama module: K/V repeated before SDPA); the last two for the Llama layout, litgpt also for Phi-3 "
            "(default: the stack's, hf)",
            help_zh="由谁的建模代码运行各层：hf（transformers）、litgpt（litgpt 0.5.3 自己的 GPT 模块：融合 QKV、K/V "
                    "扩展到全部头、RMSNorm 输出为 fp32、适配器与模型同一 dtype）或 torchtitan（其 Llama 模块：K/V 在 "
                    "SDPA 之前复制到全部头）；后两者仅用于 Llama 结构，litgpt 也用于 Phi-3（默认：训练栈的设置，hf）",
            group="workload",
            choices=C.MODEL_IMPLS,
        ),
        Option(
            "activation_model",
            "choice",
            "--activation-model",
            default="framework",
            help="framework (what transformers saves, default) or korthikanti (the paper's sbh(34+5as/h))",
            help_zh="framework（transformers 实际保存的内容，默认）或 korthikanti（论文中的 sbh(34+5as/h)）",
            group="workload",
            choices=C.ACTIVATION_MODELS,
        ),
        Option(
            "loss",
            "choice",
            "--loss",
            help="standard (fp32 logits), chunked or fused cross-entropy (one chunk of logits at a time), or "
            "chunked-held (chunk by chunk in the logits' dtype over logits all held, litgpt's) (default: the stack's, "
            "standard)",
            help_zh="standard（fp32 logits）、chunked 或 fused 交叉熵（每次只处理一块 logits），或 chunked-held（在 logits 的"
                    "精度下逐块计算，但所有 logits 都一直保留，litgpt 的做法）（默认：训练栈的设置，standard）",
            group="workload",
            choices=C.LOSS_IMPLS,
        ),
        Option("loss_chunk", "count", "--loss-chunk", help="tokens per loss chunk (default: the stack's, 1024)",
               help_zh="每个损失分块的 token 数（默认：训练栈的设置，1024）",
               group="workload"),
        Option(
            "loss_parallel",
            "choice",
            "--loss-parallel",
            help="on: under --tp each rank keeps 1/tp of the vocabulary's logits (torchtitan loss_parallel, "
            "Megatron's vocab-parallel cross-entropy) (default: the stack's)",
            help_zh="on：在 --tp 下每个 rank 只保留词表 logits 的 1/tp（torchtitan loss_parallel、Megatron 的 vocab-p"
                    "arallel 交叉熵）（默认：训练栈的设置）",
            group="workload",
            choices=("on", "off"),
        ),
        Option(
            "keep_logits",
            "flag",
            "--keep-logits",
            default=False,
            help="the training loop keeps outputs.logits alive",
            help_zh="训练循环一直持有 outputs.logits",
            group="workload",
        ),
        Option(
            "zero_grad",
            "choice",
            "--zero-grad",
            default="none",
            help="what zero_grad does between steps: none frees the gradients (set_to_none=True, PyTorch >= 2.0), "
            "zeros keeps them zero-filled (set_to_none=False, the default before PyTorch 2.0); one GPU",
            help_zh="每步之间 zero_grad 的做法：none 释放梯度（set_to_none=True，PyTorch >= 2.0），zeros 保留并清零"
                    "（set_to_none=False，PyTorch 2.0 之前的默认）；仅单卡",
            group="workload",
            choices=("none", "zeros"),
        ),
        Option(
            "dropout",
            "real",
            "--dropout",
            default=0.0,
            help="hidden/attention dropout (default 0)",
            help_zh="隐藏层/注意力 dropout（默认 0）",
            group="workload",
            bounds=(("ge", 0), ("lt", 1)),
        ),
        Option(
            "transformers_version",
            "text",
            "--transformers-version",
            help=f"the transformers release the run uses; rules that changed between releases follow it "
            f"(default {DEFAULT_TRANSFORMERS}, the newest traced)",
            help_zh=f"运行所用的 transformers 版本；在不同版本之间有变化的规则按该版本处理"
                    f"（默认 {DEFAULT_TRANSFORMERS}，已追踪的最新版本）",
            group="workload",
            metavar="X.Y",
        ),
        Option(
            "torch_version",
            "text",
            "--torch-version",
            help="the PyTorch release the run uses: before 1.11 autograd keeps softmax's input, so eager attention "
                 "keeps its scores in every layer (default: the traced release's behaviour)",
            help_zh="运行所用的 PyTorch 版本：1.11 之前 autograd 为反向保留 softmax 的输入，eager 注意力在每层都保留其打分矩阵"
                    "（默认：已追踪版本的行为）",
            group="workload",
            metavar="X.Y",
        ),
        Option(
            "bitsandbytes_version",
            "text",
            "--bitsandbytes-version",
            help="the bitsandbytes release of a QLoRA run over an NF4 base: before 0.43.2 every 4-bit matmul keeps "
                 "its input for backward (default: the newest behaviour)",
            help_zh="NF4 基座 QLoRA 运行所用的 bitsandbytes 版本：0.43.2 之前每个 4 位矩阵乘都为反向保留其输入"
                    "（默认：最新行为）",
            group="fine-tuning",
            metavar="X.Y.Z",
        ),
        Option(
            "qlora_head",
            "choice",
            "--qlora-head",
            help="QLoRA: on = the output head is a 4-bit linear too (litgpt quantizes through Lightning's "
                 "BitsandbytesPrecision, which converts every Linear), and each of its matmuls dequantizes the whole "
                 "head to fp16 and casts it to the compute dtype; off = the head stays in the compute dtype "
                 "(PEFT / transformers skip it) (default: the stack's; litgpt on, others off)",
            help_zh="QLoRA：on = 输出头也是 4 位线性层（litgpt 通过 Lightning 的 BitsandbytesPrecision 量化所有 Linear），"
                    "其每次矩阵乘都会把整个输出头反量化为 fp16 再转换为计算精度；off = 输出头保持计算精度"
                    "（PEFT / transformers 跳过它）（默认：训练栈的设置；litgpt 为 on，其他为 off）",
            group="fine-tuning",
            choices=("on", "off"),
        ),
        Option(
            "stable_embedding",
            "choice",
            "--stable-embedding",
            help="QLoRA: on = the token embedding is replaced by bitsandbytes' StableEmbedding after the optimizer is "
                 "built (litgpt's finetune/lora.py): its gradient is computed every step and kept, in no optimizer "
                 "(default: the stack's; litgpt on for qlora, others off)",
            help_zh="QLoRA：on = 在优化器建立之后，词嵌入被替换为 bitsandbytes 的 StableEmbedding（litgpt 的 finetune/lora.py）："
                    "其梯度每步都会计算并一直保留，且不属于任何优化器（默认：训练栈的设置；litgpt 的 qlora 为 on，其他为 off）",
            group="fine-tuning",
            choices=("on", "off"),
        ),
        Option(
            "kbit_prepare",
            "choice",
            "--kbit-prepare",
            help="QLoRA over an NF4 base: on = PEFT's prepare_model_for_kbit_training ran (TRL's SFTTrainer calls it): "
                 "the unquantized parameters (embedding, head, norms) are fp32 and so are the activations "
                 "(default: the stack's; hf-trainer on, torch off)",
            help_zh="NF4 基座的 QLoRA：on = 运行了 PEFT 的 prepare_model_for_kbit_training（TRL 的 SFTTrainer 会调用）："
                    "未量化的参数（嵌入、输出头、归一化）为 fp32，激活值也为 fp32（默认：训练栈的设置；hf-trainer 为 on，"
                    "torch 为 off）",
            group="fine-tuning",
            choices=("on", "off"),
        ),
        Option(
            "qlora_double_quant",
            "choice",
            "--qlora-double-quant",
            default="on",
            help="QLoRA over an NF4 base: the blocks' absmax constants quantized again to 8 bits (bitsandbytes "
                 "bnb_4bit_use_double_quant / compress_statistics; 0.127 instead of 0.5 bits per parameter); off for "
                 "transformers' BitsAndBytesConfig default and Lightning's bnb.nf4 (default on, as the QLoRA paper)",
            help_zh="NF4 基座的 QLoRA：把各块的 absmax 常数再量化为 8 位（bitsandbytes 的 bnb_4bit_use_double_quant / "
                    "compress_statistics；每个参数 0.127 位而非 0.5 位）；transformers 的 BitsAndBytesConfig 默认与 "
                    "Lightning 的 bnb.nf4 为 off（默认 on，同 QLoRA 论文）",
            group="fine-tuning",
            choices=("on", "off"),
        ),
        Option("method", "choice", "--method", default="full", group="fine-tuning", choices=C.METHODS),
        Option(
            "trainable",
            "names",
            "--trainable",
            default=(),
            help="trainable parameters by Hugging Face name, e.g. 'model.layers.[0-5].*' (--method freeze)",
            help_zh="按 Hugging Face 名称指定可训练参数，例如 'model.layers.[0-5].*'（--method freeze）",
            group="fine-tuning",
            metavar="GLOB[,GLOB]",
        ),
        Option("lora_rank", "count", "--lora-rank", default=16, group="fine-tuning"),
        Option(
            "lora_targets",
            "names",
            "--lora-targets",
            default=C.ALL_LINEAR,
            help="module names as PEFT's target_modules (default all-linear)",
            help_zh="模块名，与 PEFT 的 target_modules 相同（默认 all-linear）",
            group="fine-tuning",
            metavar="NAME[,NAME]",
        ),
        Option(
            "lora_modules_to_save",
            "names",
            "--lora-modules-to-save",
            default=(),
            help="modules trained in full beside the adapters, as PEFT's modules_to_save (e.g. embed_tokens,lm_head): "
            "each keeps its frozen original and a trainable copy",
            help_zh="与适配器一同全量训练的模块，与 PEFT 的 modules_to_save 相同（例如 embed_tokens,lm_head）："
                    "每个模块保留冻结的原模块和一份可训练副本",
            group="fine-tuning",
            metavar="NAME[,NAME]",
        ),
        Option(
            "lora_dropout", "real", "--lora-dropout", group="fine-tuning", bounds=(("ge", 0), ("lt", 1)),
            help="dropout on the LoRA adapters' input: each adapted input is kept dropped, with its mask "
                 "(default: the stack's, 0; litgpt 0.05)",
            help_zh="LoRA 适配器输入上的 dropout：每个被适配的输入都以丢弃后的副本及其掩码保存（默认：训练栈的设置，0；litgpt 为 0.05）",
        ),
        Option(
            "lora_dtype",
            "choice",
            "--lora-dtype",
            help="LoRA adapter dtype: fp32 (PEFT upcasts the adapters of a half model) or model (torchtune, litgpt: "
            "adapters in the model's dtype) (default: the stack's, fp32)",
            help_zh="LoRA 适配器的数据类型：fp32（PEFT 会把半精度模型的适配器升为 fp32）或 model（torchtune、litgpt："
                    "适配器与模型同一 dtype）（默认：训练栈的设置，fp32）",
            group="fine-tuning",
            choices=("fp32", "model"),
        ),
        Option(
            "qlora_base",
            "choice",
            "--qlora-base",
            default="nf4",
            help="the 4-bit base of --method qlora: nf4 (bitsandbytes) or gptq (an AutoGPTQ int4 checkpoint, e.g. "
            "Qwen-*-Chat-Int4: its matmuls keep each dequantized fp16 weight for backward)",
            help_zh="--method qlora 的 4-bit 底座：nf4（bitsandbytes）或 gptq（AutoGPTQ int4 检查点，例如 Qwen-*-Chat"
                    "-Int4：其矩阵乘会为反向传播保留每个反量化后的 fp16 权重）",
            group="fine-tuning",
            choices=C.QLORA_BASES,
        ),
        Option(
            "qlora_group_size",
            "count",
            "--qlora-group-size",
            default=128,
            help="GPTQ group size (the checkpoint's quantization_config group_size, default 128)",
            help_zh="GPTQ 分组大小（检查点 quantization_config 中的 group_size，默认 128）",
            group="fine-tuning",
        ),
        Option(
            "gpus",
            "count",
            "--gpus",
            help="total GPUs (infers --dp)",
            help_zh="GPU 总数（据此推出 --dp）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "dp",
            "count",
            "--dp",
            default=1,
            help="data parallel degree (default 1)",
            help_zh="数据并行度（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "tp",
            "count",
            "--tp",
            default=1,
            help="tensor parallel degree (default 1)",
            help_zh="张量并行度（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "pp",
            "count",
            "--pp",
            default=1,
            help="pipeline stages degree (default 1)",
            help_zh="流水线阶段数（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "ep",
            "count",
            "--ep",
            default=1,
            help="expert parallel degree (default 1)",
            help_zh="专家并行度（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "cp",
            "count",
            "--cp",
            default=1,
            help="context parallel degree (default 1)",
            help_zh="上下文并行度（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "vpp",
            "count",
            "--vpp",
            default=1,
            help="virtual stages per pipeline rank (interleaved) degree (default 1)",
            help_zh="每个流水线 rank 上的虚拟阶段数（交错调度）（默认 1）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "sp",
            "flag",
            "--sp",
            default=False,
            help="sequence parallelism (with --tp)",
            help_zh="序列并行（配合 --tp）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "zero",
            "choice",
            "--zero",
            default=0,
            help="ZeRO stage (DeepSpeed semantics; FSDP2 with --framework torch --zero 3)",
            help_zh="ZeRO 阶段（DeepSpeed 语义；--framework torch --zero 3 时为 FSDP2）",
            group="parallel layout (per GPU, most loaded rank)",
            choices=(0, 1, 2, 3),
        ),
        Option(
            "dp_shard",
            "count",
            "--dp-shard",
            help="hybrid sharding (HSDP, DeepSpeed MiCS, Megatron optimizer instances): with --zero 1-3, shard states "
                 "(and FSDP2/ZeRO-3 parameters) over N·cp ranks, replicate over dp/N groups; N divides dp (default: "
                 "all data-parallel ranks)",
            help_zh="混合分片（HSDP、DeepSpeed MiCS、Megatron 多优化器实例）：配合 --zero 1-3，把状态（以及 FSDP2/ZeR"
                    "O-3 的参数）分片到 N·cp 个 rank 上，在 dp/N 组之间复制；N 须整除 dp（默认：全部数据并行 rank）",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="N",
        ),
        Option(
            "microbatches",
            "count",
            "--microbatches",
            help="micro-batches per step (pipeline)",
            help_zh="每步的 micro-batch 数（流水线并行）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "offload",
            "choice",
            "--offload",
            default="none",
            help="optimizer (and params) to CPU",
            help_zh="把优化器（和参数）卸载到 CPU",
            group="parallel layout (per GPU, most loaded rank)",
            choices=C.OFFLOADS,
        ),
        Option(
            "no_reshard",
            "flag",
            "--no-reshard",
            default=False,
            help="FSDP2 (--zero 3): keep each layer's gathered parameters from forward to backward "
                 "(reshard_after_forward=False)",
            help_zh="FSDP2（--zero 3）：每层聚合后的参数从前向一直保留到反向（reshard_after_forward=False）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "fsdp_embedding_groups",
            "choice",
            "--fsdp-embedding-groups",
            help="FSDP2 (--zero 3): on = the input embedding and the output head are FSDP groups of their own, "
                 "gathered only around their forward and backward (torchtune custom_sharded_layers: "
                 "['tok_embeddings', 'output']); off = they sit in the root group, unsharded through the whole step "
                 "(default: the stack's, off)",
            help_zh="FSDP2（--zero 3）：on = 输入嵌入和输出头各自成为 FSDP 分组，只在各自的前向和反向前后聚合"
                    "（torchtune custom_sharded_layers: ['tok_embeddings', 'output']）；off = 它们属于根分组，"
                    "整个训练步都保持未分片（默认：训练栈的设置，off）",
            group="parallel layout (per GPU, most loaded rank)",
            choices=("on", "off"),
        ),
        Option(
            "ds_reduce_bucket",
            "count",
            "--ds-reduce-bucket",
            help="DeepSpeed reduce_bucket_size in elements: ZeRO-1/2's ipg buffer through backward, ZeRO-3's "
            "reduce bucket (default: the stack's, DeepSpeed's 5e8)",
            help_zh="DeepSpeed reduce_bucket_size，单位为元素个数：ZeRO-1/2 在整个反向传播期间的 ipg 缓冲区，ZeRO-3 "
                    "的 reduce bucket（默认：训练栈的设置，DeepSpeed 的 5e8）",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "ds_overlap_comm",
            "choice",
            "--ds-overlap-comm",
            help="DeepSpeed overlap_comm: on doubles ZeRO-1/2's ipg buffer; auto = DeepSpeed's default (on for "
            "ZeRO-3 only) (default: the stack's)",
            help_zh="DeepSpeed overlap_comm：on 会使 ZeRO-1/2 的 ipg 缓冲区翻倍；auto = DeepSpeed 的默认值（仅 ZeRO-3"
                    " 时为 on）（默认：训练栈的设置）",
            group="parallel layout (per GPU, most loaded rank)",
            choices=C.DS_OVERLAP_COMM,
        ),
        Option(
            "ds_contiguous_gradients",
            "choice",
            "--ds-contiguous-gradients",
            help="DeepSpeed contiguous_gradients: off drops the reduce buffers (default: the stack's, on)",
            help_zh="DeepSpeed contiguous_gradients：off 会去掉 reduce 缓冲区（默认：训练栈的设置，on）",
            group="parallel layout (per GPU, most loaded rank)",
            choices=("on", "off"),
        ),
        Option(
            "ds_prefetch_bucket",
            "count",
            "--ds-prefetch-bucket",
            help="DeepSpeed stage3_prefetch_bucket_size in elements: ZeRO-3 parameters prefetched ahead of the "
            "layer computing (default: the stack's, 5e7)",
            help_zh="DeepSpeed stage3_prefetch_bucket_size，单位为元素个数：ZeRO-3 在某层计算之前预取的参数（默认：训"
                    "练栈的设置，5e7）",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "ds_max_live_params",
            "count",
            "--ds-max-live-params",
            help="DeepSpeed stage3_max_live_parameters in elements: caps ZeRO-3's gathered parameters (default: "
            "the stack's, 1e9)",
            help_zh="DeepSpeed stage3_max_live_parameters，单位为元素个数：ZeRO-3 已聚合参数的上限（默认：训练栈的设"
                    "置，1e9）",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "per_rank",
            "flag",
            "--per-rank",
            default=False,
            help="show every distinct rank (pipeline stages)",
            help_zh="显示每个不同的 rank（各流水线阶段）",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "gpu", "text", "--gpu", help="catalog id (see `gpuplan gpus`): fit and headroom",
            help_zh="GPU 目录 id（见 `gpuplan gpus`）：检查是否放得下及剩余显存", group="fit and overheads"
        ),
        check("exit 3 when it does not fit", "放不下时以退出码 3 退出", group="fit and overheads"),
        Option(
            "max_batch",
            "flag",
            "--max-batch",
            default=False,
            help="find the largest micro-batch that fits --gpu",
            help_zh="求出 --gpu 上放得下的最大 micro-batch",
            group="fit and overheads",
        ),
        Option(
            "max_seq",
            "flag",
            "--max-seq",
            default=False,
            help="find the longest sequence that fits --gpu (a multiple of --cp)",
            help_zh="求出 --gpu 上放得下的最长序列（--cp 的整数倍）",
            group="fit and overheads",
        ),
        Option(
            "cuda_context",
            "real",
            "--cuda-context",
            help="CUDA context (default 512)",
            help_zh="CUDA 上下文（默认 512）",
            group="fit and overheads",
            metavar="MIB",
            bounds=(("ge", 0),),
            scale=1048576,
            as_int=True,
        ),
        Option(
            "workspace",
            "real",
            "--workspace",
            help="library workspaces (default 40)",
            help_zh="各计算库的工作区（默认 40）",
            group="fit and overheads",
            metavar="MIB",
            bounds=(("ge", 0),),
            scale=1048576,
            as_int=True,
        ),
        Option(
            "cuda_module_loading",
            "choice",
            "--cuda-module-loading",
            help="lazy (PyTorch >= 2.0) or eager (older PyTorch: every kernel loaded with the context); sizes the "
            "default CUDA context (default: the stack's, lazy)",
            help_zh="lazy（PyTorch >= 2.0）或 eager（较旧的 PyTorch：所有 kernel 随上下文一起加载）；决定默认 CUDA 上"
                    "下文的大小（默认：训练栈的设置，lazy）",
            group="fit and overheads",
            choices=C.CUDA_MODULE_LOADING,
        ),
        Option(
            "allocator_reserve",
            "real",
            "--allocator-reserve",
            help="caching-allocator reserve as a flat fraction of the allocated peak (default: the larger of 0.05 and "
                 "the segment rule, where the loss region's tensors open segments of their own)",
            help_zh="缓存分配器的预留量，占已分配峰值的固定比例（默认取 0.05 与分段规则两者中的较大者：损失区的张量各自新开段）",
            group="fit and overheads",
            metavar="FRACTION",
            bounds=(("ge", 0), ("lt", 1)),
        ),
        LANG,
        ADVISE,
        CONFIG,
        FROM,
        PLOT,
    ),
)
