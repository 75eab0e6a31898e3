"""Memory estimates made before anything is decoded: a split that cannot fit is refused up front, with the
option that avoids holding it, rather than killed by the OS after a long decoding pass."""
from __future__ import annotations

import os

# Leave room for the networks, the loaders and everything else the process holds.
USABLE_SHARE = 0.8


def available_bytes() -> int:
    """Host memory available to this process now (``MemAvailable``; the physical pages where that is unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(needed: int, what: str, remedy: str) -> None:
    """Raise MemoryError naming ``what`` needs ``needed`` bytes, the memory available, and ``remedy``,
    when ``needed`` exceeds the usable share of the available host memory."""
    available = available_bytes()
    if needed > USABLE_SHARE * available:
        raise MemoryError(f"{what} needs about {needed / 2**30:.1f} GiB, but {available / 2**30:.1f} GiB of memory "
                          f"are available: {remedy}")
