"""``gpuplan plan MODEL --serve``: the ranked serving deployments, printed."""

from __future__ import annotations

import argparse
import sys

from gpuplan.cli.common import print_json
from gpuplan.cli.render import render_table
from gpuplan.commands.serve_plan import _layout, search_serving, to_json, why_winner
from gpuplan.i18n import colon, heading, headers, lang_of, localize, t
from gpuplan.units import format_seconds


def run(args: argparse.Namespace) -> int:
    r = search_serving(args)
    plans, q = r.result.plans, r.q
    if args.json:
        if not plans:
            print_json({"serve_plans": [], "rejected": r.result.rejected, "warnings": [str(w) for w in r.warnings]})
            print("gpuplan plan: " + t("serve.none", "en"), file=sys.stderr)
            return 3 if args.check else 2
        print_json(to_json(r))
        return 0
    lang = lang_of(args)
    tr, tg = q.traffic, q.targets
    load = f"{tr.rps:g} requests/s" if tr.rps is not None else f"{tr.concurrency:,} concurrent requests"
    targets = ", ".join(f"{name} {v:g} s" for name, v in (("TTFT", tg.ttft_s), ("TPOT", tg.tpot_s), ("E2E", tg.e2e_s))
                        if v is not None) or "none"
    prefix = f", prefix hit {tr.prefix_hit:.0%}" if tr.prefix_hit else ""
    print(t("serve.summary", lang, model=r.spec.name, load=load, prompt=f"{tr.prompt_tokens:,}",
            output=f"{tr.output_tokens:,}", prefix=prefix, targets=targets, percentile=tg.percentile))
    if not plans:
        print(f"gpuplan plan: {t('serve.none', lang)}", file=sys.stderr)
        for x in r.result.rejected:
            print(f"- {x['gpu']} tp={x['tp']} pp={x['pp']} ep={x['ep']}: {x['reason']}", file=sys.stderr)
        return 3 if args.check else 2
    rows = []
    for p in plans[: q.top]:
        cost = p.cost_usd_per_million_output_tokens
        rows.append((_layout(p.layout, p.prefill), p.gpu, f"{p.gpus:,}", f"{p.load.concurrency:,.0f}",
                     f"{p.output_tokens_per_s:,.0f}", format_seconds(p.load.ttft_s), format_seconds(p.load.tpot_s),
                     p.limiting(), "-" if cost is None else f"{cost:,.2f}"))
    names = ("layout", "gpu", "gpus", "batch", "tokens", "ttft", "tpot", "bound", "cost")
    print(render_table(headers("serve.header", names, lang), rows, "llrrrrrlr"))
    print(f"\n{heading('serve.why', lang)}")
    for line in why_winner(r):
        print(f"- {localize(line, lang)}")
    if args.explain:
        print(f"\n{heading('serve.rejected', lang)}")
        for x in r.result.rejected:
            print(f"- {x['gpu']} tp={x['tp']} pp={x['pp']} ep={x['ep']}{colon(lang)}{localize(x['reason'], lang)}")
        print(f"\n{heading('section.assumptions', lang)}")
        for a in r.assumptions:
            print(f"- {localize(a, lang)}")
    for w in r.warnings:
        print(f"{t('word.warning', lang)}{colon(lang)}{localize(w, lang)}")
    return 0
