"""A backtest's results written out: ``results.json`` and the equity-curve plot ``equity.png``.

The thin shell over :mod:`seqtrade.backtest_results` (which computes everything): files and
matplotlib (the ``plot`` extra: ``pip install 'seqtrade[plot]'``) live here.
"""

from __future__ import annotations

from pathlib import Path

from .backtest_results import Results, to_json
from .errors import SeqtradeError

__all__ = ["write_results", "plot_equity"]


def write_results(r: Results, out_dir: Path, *, plot: bool = True) -> list[Path]:
    """``out_dir/results.json`` and, with ``plot``, ``out_dir/equity.png``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json"]
    written[0].write_text(to_json(r), encoding="utf-8")
    if plot:
        written.append(plot_equity(r, out_dir / "equity.png"))
    return written


def plot_equity(r: Results, path: Path) -> Path:
    """The account's and each strategy's equity over the run's time (seconds from its start)."""
    try:
        import matplotlib
    except ImportError:
        raise SeqtradeError("the equity plot needs matplotlib: pip install 'seqtrade[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    curves = [("account", r.account.equity), *((k, v.equity) for k, v in r.strategies.items())]
    for name, equity in curves:
        xs = [(t - r.start_ns) / 1e9 for t, _ in equity]
        ax.step(xs, [e for _, e in equity], where="post", label=name, linewidth=2 if name == "account" else 1)
    ax.set_xlabel("seconds from the start of the recording")
    ax.set_ylabel("equity (quote currency)")
    ax.set_title("backtest equity")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
