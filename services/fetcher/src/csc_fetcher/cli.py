"""csc-fetch (csc fetch-data): fetch EM and ground-truth crops; see `fetch` for the contract."""

import sys

from csc_common.cli import parse_config, run_main

from csc_fetcher.config import Config


def main(argv: list[str] | None = None) -> int:
    return run_main("csc-fetch", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, "csc-fetch")
    from csc_fetcher.fetch import run

    run(cfg, args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
