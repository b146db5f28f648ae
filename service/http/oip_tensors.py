"""The Open Inference Protocol's request and response bodies (KServe v2 REST), as far as this
service needs them: tensors of BYTES in, FP64 and BYTES out, in JSON or with the binary tensor
data extension that tritonclient uses by default.

With the extension, a body is a JSON header of `Inference-Header-Content-Length` bytes followed
by the tensors' raw bytes, in the order of the header's tensors, each sized by its
`parameters.binary_data_size`. A BYTES tensor's raw form is each element as a 4-byte
little-endian length and its bytes (tritonclient.utils.serialize_byte_tensor).

Every fault of the request's own form is a 400 bad_request naming it; what the images
themselves are worth is left to the scoring pipeline, as for /predict.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from service.http.errors import ApiError

HEADER_LENGTH = "inference-header-content-length"
LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    input_name: str
    elements: list[bytes]  # one encoded image each
    outputs: list[str] | None  # asked for by name; None: all
    binary_outputs: set[str]  # those asked for as raw bytes


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str  # FP64 | BYTES
    values: list[float] | list[str]


def _bad(message: str) -> ApiError:
    return ApiError("bad_request", message)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what} must be a JSON object")
    return value


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON header, the binary part after it)."""
    if header_length is None:
        size = len(body)
    elif not header_length.isdigit() or int(header_length) > len(body):
        raise _bad(f"Inference-Header-Content-Length is '{header_length}'; expected the JSON header's "
                   f"size in bytes, at most the body's {len(body)}")
    else:
        size = int(header_length)
    try:
        header = json.loads(body[:size])
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"the inference request is not valid JSON: {exc}") from None
    return _object(header, "the inference request"), body[size:]


def deserialize_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """`count` elements of a BYTES tensor in its raw form; the sizes must add up exactly."""
    elements: list[bytes] = []
    offset = 0
    for _ in range(count):
        if offset + LENGTH.size > len(raw):
            raise _bad(f"input '{name}': its binary data ends before element {len(elements)}'s length")
        (size,) = LENGTH.unpack_from(raw, offset)
        offset += LENGTH.size
        if offset + size > len(raw):
            raise _bad(f"input '{name}': element {len(elements)} says {size} bytes, {len(raw) - offset} remain")
        elements.append(raw[offset:offset + size])
        offset += size
    if offset != len(raw):
        raise _bad(f"input '{name}': {len(raw) - offset} bytes left over after its {count} elements")
    return elements


def _element_count(shape: object, name: str) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or \
            len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _bad(f"input '{name}' has shape {shape}; expected [N] or [N, 1], one encoded image per element")
    return int(shape[0])


def parse_request(body: bytes, header_length: str | None, input_name: str, output_names: list[str],
                  max_images: int) -> InferRequest:
    """The request, checked against what the model takes and answers."""
    header, binary = split_body(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise _bad(f"the request must have one input, '{input_name}' (BYTES: the encoded images)")
    tensor = _object(inputs[0], "an input")
    if tensor.get("name") != input_name:
        raise _bad(f"input '{tensor.get('name')}' is unknown; this model's input is '{input_name}'")
    if tensor.get("datatype") != "BYTES":
        raise _bad(f"input '{input_name}' has datatype {tensor.get('datatype')}; expected BYTES (the encoded image)")
    count = _element_count(tensor.get("shape"), input_name)
    if not 1 <= count <= max_images:
        raise _bad(f"input '{input_name}' has {count} images; 1 to {max_images} are taken (CXR_MAX_BATCH_FILES)")
    size = _object(tensor.get("parameters", {}), "input parameters").get("binary_data_size")
    if size is None:
        # JSON BYTES are text: an image cannot travel that way
        raise _bad(f"input '{input_name}' must come as binary data (parameters.binary_data_size; "
                   "tritonclient's set_data_from_numpy with binary_data=True, its default)")
    if not isinstance(size, int) or size != len(binary):
        raise _bad(f"input '{input_name}' says binary_data_size {size}, the body carries {len(binary)} bytes after the JSON")
    elements = deserialize_bytes(binary, count, input_name)

    parameters = _object(header.get("parameters", {}), "the request's parameters")
    all_binary = parameters.get("binary_data_output") is True
    asked = header.get("outputs")
    if asked is None:
        return InferRequest(_id(header), input_name, elements, None, set(output_names) if all_binary else set())
    if not isinstance(asked, list):
        raise _bad("outputs must be a list of {\"name\": ...}")
    names, binary_outputs = [], set()
    for item in asked:
        output = _object(item, "an output")
        name = output.get("name")
        if name not in output_names:
            raise _bad(f"output '{name}' is unknown; this model answers {', '.join(output_names)}")
        names.append(name)
        wants_binary = _object(output.get("parameters", {}), "output parameters").get("binary_data", all_binary)
        if wants_binary is True:
            binary_outputs.add(name)
    return InferRequest(_id(header), input_name, elements, names, binary_outputs)


def _id(header: dict[str, Any]) -> str | None:
    value = header.get("id")
    if value is not None and not isinstance(value, str):
        raise _bad("id must be a string")
    return value


def _raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "FP64":
        return struct.pack(f"<{len(tensor.values)}d", *tensor.values)
    return b"".join(LENGTH.pack(len(encoded)) + encoded for encoded in (str(v).encode() for v in tensor.values))


def encode_response(head: dict[str, Any], tensors: list[Tensor], binary: set[str]) -> tuple[bytes, int | None]:
    """(the body, the JSON header's length when binary data follows it, else None)."""
    outputs, raw = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": [len(tensor.values)]}
        if tensor.name in binary:
            data = _raw(tensor)
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            entry["data"] = tensor.values
        outputs.append(entry)
    encoded = json.dumps({**head, "outputs": outputs}).encode()
    return (encoded + b"".join(raw), len(encoded)) if raw else (encoded, None)
