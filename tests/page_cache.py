"""What the kernel did with a mapped file's pages (Linux: /proc/self/smaps)."""
import os
import re

import numpy as np

from gguf_writer import GGUFWriter
from llmcli.quants import GGMLType


def huge_pages_possible():
    """Transparent huge pages on (always or madvise) and /proc/self/smaps to see them."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            setting = f.read()
    except OSError:
        return False
    return "[never]" not in setting and os.path.exists("/proc/self/smaps")


def file_pmd_mapped_kib(path):
    """FilePmdMapped (kB) of this process's map(s) of `path`, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's header line
                inside = line.rstrip("\n").endswith(" " + str(path))
            elif inside and line.startswith("FilePmdMapped:"):
                total += int(line.split()[1])
    return total


def eight_mib_gguf(seed=0):
    """The bytes of a GGUF file whose one tensor ("w", 8 MiB of int8) spans whole 2 MiB
    pages."""
    w = GGUFWriter(alignment=32)
    w.add_tensor("w", np.random.default_rng(seed).integers(0, 255, 8 << 20, dtype=np.uint8),
                 ggml_type=GGMLType.I8, dims=(8 << 20,))
    return w.to_bytes()
