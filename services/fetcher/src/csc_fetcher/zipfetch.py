"""--zip: download one of the challenge's pre-made zips instead of chunk keys (UPSTREAM.md §1.1).

Only with ``--crops all`` (the config refuses anything else), and only where
zip_manifest.csv lists a zip for the requested (all resolutions, padding) pair;
otherwise it is bad input (exit 2), where the original warned and exited 0 with
nothing downloaded. The user unzips the archive into --dest themselves.
"""

import logging
from pathlib import Path

from csc_common.errors import InputError
from csc_common.log import progress_bar

from csc_fetcher.config import Config
from csc_fetcher.io import default_location, read_text
from csc_fetcher.sources import LocalSource, S3Source, Source, parse_s3_url

log = logging.getLogger("csc.fetch")


def parse_zip_manifest(text: str, where: str) -> list[tuple[bool, int, str, str]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or [h.strip() for h in lines[0].split(",")] != ["all_res", "raw_padding", "file", "url"]:
        raise InputError(f"{where}: header must be all_res,raw_padding,file,url")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        p = [v.strip() for v in line.split(",")]
        if len(p) != 4 or p[0] not in ("True", "False") or not p[1].isdigit():
            raise InputError(f"{where} line {n}: expected True|False,<int>,<file>,<s3 url>")
        out.append((p[0] == "True", int(p[1]), p[2], p[3]))
    return out


def fetch_zip(cfg: Config, source: Source, dest: Path) -> Path | None:
    """Download the zip for (--fetch-all-em-resolutions, --raw-padding); its path (None for --dry-run)."""
    where = cfg.zip_manifest or default_location("zip_manifest")
    rows = parse_zip_manifest(read_text(where, endpoint_url=cfg.endpoint_url, retry=cfg.retry), where)
    match = [r for r in rows if r[0] == cfg.fetch_all_em_resolutions and r[1] == cfg.raw_padding]
    if not match:
        have = ", ".join(f"(all_res={a}, raw_padding={p})" for a, p, _, _ in rows) or "none"
        raise InputError(
            f"{where}: no zip for all_res={cfg.fetch_all_em_resolutions} raw_padding={cfg.raw_padding} "
            f"(listed: {have}); drop --zip to fetch chunks"
        )
    _, _, name, url = match[0]
    bucket, key = parse_s3_url(url)
    out = dest / name
    if cfg.dry_run:
        print(f"plan: download {url} to {out}")
        return None
    if isinstance(source, LocalSource):
        data = source.get(key)
        if data is None:
            raise InputError(f"{source.name}/{key}: zip not found")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    else:
        s3 = (
            source
            if isinstance(source, S3Source) and source.bucket == bucket
            else S3Source(bucket, endpoint_url=cfg.endpoint_url, retry=cfg.retry, read_timeout=cfg.timeout)
        )
        bar = progress_bar(desc=name, unit="B", unit_scale=True, unit_divisor=1024)
        try:
            s3.download_file(key, out, on_bytes=bar.update)
        finally:
            bar.close()
    log.info("downloaded %s (%d bytes); unpack it with: unzip %s -d %s", out, out.stat().st_size, out, dest)
    return out
