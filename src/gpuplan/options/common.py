"""Options several commands share: the model (a name or raw dimensions), output, language, scenario files."""

from __future__ import annotations

from gpuplan.options.field import Option

DIMENSIONS_GROUP = "model from raw dimensions (instead of MODEL)"

MODEL = Option("model", "positional", nargs="?", api=False,
               help="preset id, Hugging Face id, or path to a config.json (or its folder); for train and plan also "
                    "a torchtitan TOML job config, a torchtune, axolotl, LLaMA-Factory or TRL / Trainer YAML recipe or a "
                    "Megatron-LM argument list or launch script; for infer a `vllm serve` command line in a text file",
               help_zh="预设 id、Hugging Face id，或 config.json（或其所在文件夹）的路径；"
                       "train 和 plan 还可以是 torchtitan TOML 任务配置、torchtune、axolotl、LLaMA-Factory、"
                       "TRL / Trainer 的 YAML 训练配置，或 Megatron-LM 参数列表或启动脚本；"
                       "infer 还可以是写在文本文件里的 `vllm serve` 命令行")


def _dim(name: str, help: str, help_zh: str) -> Option:
    return Option(name, "count", "--" + name.replace("_", "-"), help=help, help_zh=help_zh, group=DIMENSIONS_GROUP)


DIMENSIONS = (
    _dim("layers", "number of transformer layers", "Transformer 层数"),
    _dim("hidden", "hidden size", "隐藏层维度"),
    _dim("heads", "attention heads", "注意力头数"),
    _dim("kv_heads", "key/value heads (GQA/MQA); default = heads",
         "键/值头数（GQA/MQA）；默认等于注意力头数"),
    _dim("head_dim", "head dimension; default hidden/heads", "每个头的维度；默认 hidden/heads"),
    _dim("ffn", "MLP intermediate size; default 8h/3 rounded to 256 (gated)",
         "MLP 中间层维度；默认 8h/3 向上取整到 256（门控）"),
    _dim("vocab", "vocabulary size (default 32000)", "词表大小（默认 32000）"),
    _dim("experts", "routed experts per layer (MoE)", "每层路由专家数（MoE）"),
    _dim("top_k", "experts per token (MoE)", "每个 token 激活的专家数（MoE）"),
    _dim("params", "parameter count only (7e9, 7B): enough for time and for model states",
         "仅给出参数量（7e9、7B）：足以估算训练时间和模型状态"),
)
MODEL_OPTIONS = (MODEL, *DIMENSIONS)

JSON = Option("json", "flag", "--json", default=False, api=False,
              help="print machine-readable JSON (bytes, FLOP, seconds)",
              help_zh="输出机器可读的 JSON（字节、FLOP、秒）")
EXPLAIN = Option("explain", "flag", "--explain", default=False,
                 help="print each number with its formula and source", help_zh="列出每个数字的公式和来源")
LANG = Option("lang", "choice", "--lang", choices=("en", "zh"), api=False,
              help="language of the human-readable output (default from the locale: LANG/LC_ALL); "
                   "JSON keys stay English",
              help_zh="人类可读输出的语言（默认取自 locale：LANG/LC_ALL）；JSON 的键保持英文")
ADVISE = Option("advise", "flag", "--advise", default=False,
                help="when it does not fit (or to save memory): every change that helps, re-estimated, "
                     "ranked by its cost in speed (needs --gpu)",
                help_zh="放不下时（或为了省显存）：列出每个有帮助的改动，"
                        "重新估算，并按速度代价排序（需要 --gpu）")
CONFIG = Option("config", "text", "--config", metavar="FILE", api=False,
                help="scenario file (.toml, or .yaml with PyYAML) holding any of these options; options "
                     "given on the command line win",
                help_zh="场景文件（.toml，或安装了 PyYAML 时的 .yaml），可包含上述任意选项；命令行给出的选项优先")
FROM = Option("from_file", "config", "--from", metavar="FILE", group="config files",
              help="a stack's config file whose settings apply to MODEL: a DeepSpeed JSON (or a torchtitan TOML, "
                   "or a YAML recipe, whose model MODEL replaces); options given on the command line win (the "
                   "Python API also takes the parsed file as a dict)",
              help_zh="应用于 MODEL 的训练栈配置文件：DeepSpeed JSON（或 torchtitan TOML，或 YAML 训练配置，"
                      "其中的模型由 MODEL 取代）；命令行给出的选项优先（Python API 也接受解析后的文件内容，即 dict）")
PLOT = Option("plot", "text", "--plot", metavar="FILE", api=False,
              help="also draw the memory breakdown to FILE.png or FILE.svg "
                   "(needs matplotlib: pip install 'gpuplan[plot]')",
              help_zh="同时把显存构成画到 FILE.png 或 FILE.svg（需要 matplotlib：pip install 'gpuplan[plot]'）")


def check(help: str, help_zh: str, group: str | None = None) -> Option:
    """``--check``: exit status 3 when the answer says no (what "no" means is each command's ``help``)."""
    return Option("check", "flag", "--check", default=False, api=False, help=help, help_zh=help_zh, group=group)

# A vision-language model's images (train and infer): gpuplan.model.images
IMAGE_OPTIONS = (
    Option("images", "count", "--images",
           help="images per sequence, for a vision-language model: their tokens join the sequence and the "
                "vision tower's weights, activations and FLOPs are added as their own terms",
           help_zh="每条序列的图像数（视觉语言模型）：图像 token 计入序列，视觉塔的权重、激活值和 FLOPs 作为单独的项加入",
           group="workload"),
    Option("image_size", "text", "--image-size", metavar="HxW",
           help="size of each image in pixels, height x width (default 1024x1024; the tower's processor "
                "resizes it)",
           help_zh="每张图像的尺寸（像素，高 x 宽；默认 1024x1024，按视觉塔的预处理规则缩放）", group="workload"),
)
