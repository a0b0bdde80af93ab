"""Write a copy of a GGUF file with every tensor dequantized to F32 (with gguf-py).

    python tests/golden/dequantize_gguf.py /work/models/gemma3.gguf /tmp/gemma3_f32.gguf
llama.cpp on such a copy (with an F32 KV cache) does float math on the very weights the
reference uses, so its distance to the reference isolates implementation details from
quantization noise: compare_llamacpp.py --f32-dir uses it to pin down Gemma 3's
sliding-window boundary and to give the float-activation bar.
"""
import sys

import gguf
import numpy as np


def copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    for name, field in reader.fields.items():
        # GGUF.* are the reader's view of the header; the writer adds the architecture.
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        value = 0 if name == "general.file_type" else field.contents()  # 0 = all F32
        writer.add_key_value(name, value, value_type, sub_type=sub_type)


def main(src: str, dst: str) -> int:
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.fields["general.architecture"].contents())
    copy_metadata(reader, writer)
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        # tensor.shape is in ggml order (contiguous dimension first); NumPy wants it last.
        writer.add_tensor(tensor.name, values.reshape(tuple(int(n) for n in tensor.shape[::-1])))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
