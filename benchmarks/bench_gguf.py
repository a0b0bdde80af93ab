"""How long opening a GGUF file takes: header, all metadata (the vocabulary and merges
included) and the tensor table, with llmcli.gguf and, as the peer in the same run, the
`gguf` package's GGUFReader (which eagerly builds per-string arrays).

    python benchmarks/bench_gguf.py [PATH ...]     (default: the smollm2 model)

The machine may be shared, so both wall time and process CPU time are shown, as the
best and the median of several runs.
"""
import statistics
import sys
import time


def measure(open_file, path, repeats):
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        open_file(path)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def report(label, walls, cpus):
    ms = lambda xs: f"best {min(xs) * 1e3:7.1f} ms, median {statistics.median(xs) * 1e3:7.1f} ms"
    print(f"  {label:<22} wall {ms(walls)} | cpu {ms(cpus)}")


def main(paths):
    from llmcli.gguf import open_gguf

    if not paths:
        from llmcli.models import ensure_local
        paths = [str(ensure_local("smollm2"))]
    for path in paths:
        parsed = open_gguf(path)
        sizes = {k: len(v) for k, v in parsed.metadata.items()
                 if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")}
        print(f"{path}: {len(parsed.metadata)} keys {sizes}, {len(parsed.tensors)} tensors")
        report("llmcli.gguf.open_gguf", *measure(open_gguf, path, 25))
        try:
            import gguf
        except ImportError:
            continue
        report("gguf.GGUFReader (peer)", *measure(gguf.GGUFReader, path, 1))


if __name__ == "__main__":
    main(sys.argv[1:])
