"""``--cluster`` and its inputs, shared by ``gpuplan time`` and ``gpuplan plan`` (one block, one group)."""

from __future__ import annotations

from gpuplan.options.field import Option

GROUP = "cluster bill (--cluster)"

CLUSTER_OPTIONS = (
    Option("cluster", "flag", "--cluster", default=False, group=GROUP,
           help="add the cluster bill: servers with spares, racks and power, network, storage, host memory, "
                "rent versus purchase",
           help_zh="附上集群账单：含备件的服务器数、机柜与电力、网络、存储、主机内存、租用与购买成本"),
    Option("spare", "real", "--spare", default=0.05, group=GROUP, bounds=(("ge", 0), ("le", 1)),
           help="spare GPUs as a fraction of the run's GPUs (default 0.05, as seed 004)",
           help_zh="备用 GPU 占训练所用 GPU 的比例（默认 0.05，同种子文档 004）"),
    Option("round", "choice", "--round", default="unit", group=GROUP, choices=("unit", "pow2", "node"),
           help="cluster size rule: unit = next multiple of lcm(TP·PP·CP, node size) (default), pow2 = that unit "
                "times a power of two (seed 004's 1,024), node = whole servers",
           help_zh="集群规模取整规则：unit = lcm(TP·PP·CP, 每节点卡数) 的下一个倍数（默认），pow2 = 该单元乘以 2 的幂"
                   "（种子文档 004 的 1,024），node = 整台服务器"),
    Option("rack_kw", "real", "--rack-kw", default=40.0, group=GROUP, bounds=(("ge", 0.1), ("le", 1e4)),
           help="IT power budget per rack, kW (default 40, as seed 004)",
           help_zh="每个机柜的 IT 功率预算，kW（默认 40，同种子文档 004）"),
    Option("switch_radix", "count", "--switch-radix", default=64, group=GROUP, metavar="PORTS",
           help="ports per network switch, even, 4 to 1,024 (default 64)",
           help_zh="每台网络交换机的端口数（默认 64）"),
    Option("storage_gbps", "real", "--storage-gbps", default=100.0, group=GROUP, bounds=(("ge", 1e-3), ("le", 1e9)),
           help="aggregate storage write bandwidth, GB/s (default 100, seed 004's floor)",
           help_zh="存储聚合写带宽，GB/s（默认 100，种子文档 004 的下限）"),
    Option("bytes_per_token", "real", "--bytes-per-token", default=4.0, group=GROUP,
           bounds=(("ge", 1e-3), ("le", 1e6)),
           help="dataset bytes per token (default 4: 32-bit token ids, about 4 characters of text)",
           help_zh="数据集每个 token 的字节数（默认 4：32 位 token id，约 4 个字符的文本）"),
    Option("currency", "text", "--currency", default="USD", group=GROUP, metavar="CODE",
           help="currency of the money lines (ISO code, default USD; another needs --fx)",
           help_zh="金额所用货币（ISO 代码，默认 USD；其他货币需要 --fx）"),
    Option("fx", "real", "--fx", group=GROUP, bounds=(("ge", 1e-6), ("le", 1e9)), metavar="RATE",
           help="units of --currency per US dollar (7.2 for CNY)",
           help_zh="每美元折合的 --currency 货币单位数（人民币如 7.2）"),
    Option("server_usd", "real", "--server-usd", group=GROUP, bounds=(("ge", 1), ("le", 1e9)),
           help="purchase price of one server with its GPUs, USD (default: prices.toml)",
           help_zh="一台服务器（含 GPU）的购买价格，美元（默认：prices.toml）"),
    Option("power_usd_per_kwh", "real", "--power-usd-per-kwh", group=GROUP, bounds=(("ge", 1e-6), ("le", 100)),
           help="electricity price, USD per kWh (default: prices.toml, US industrial average)",
           help_zh="电价，美元/kWh（默认：prices.toml，美国工业用电均价）"),
    Option("years", "real", "--years", group=GROUP, bounds=(("ge", 0.1), ("le", 50)),
           help="years over which a purchased server is depreciated (default: prices.toml, 5)",
           help_zh="购买服务器的折旧年限（默认：prices.toml，5 年）"),
)

# plan has no --pue of its own (time's is in its cost and energy group)
CLUSTER_PUE = Option("pue", "real", "--pue", group=GROUP, bounds=(("ge", 1), ("le", 10)),
                     help="power usage effectiveness for --cluster (default 1.1)",
                     help_zh="--cluster 所用的电能使用效率 PUE（默认 1.1）")

XLSX = Option("xlsx", "text", "--xlsx", metavar="FILE", group=GROUP, api=False,
              help="also write the run (and with --cluster its bill) to FILE.xlsx: input cells drive live formulas "
                   "(needs openpyxl: pip install 'gpuplan[xlsx]')",
              help_zh="同时把训练（给了 --cluster 时还有集群账单）写入 FILE.xlsx：输入单元格驱动实时公式"
                      "（需要 openpyxl：pip install 'gpuplan[xlsx]'）")
