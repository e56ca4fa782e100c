"""Cutting a sub-graph out of an ONNX model, without the onnx package (the rover does not ship it).

The rover's analysis graph is g_a and h_a in one model: x --g_a--> y, and z = h_a(y * gain). y does
not depend on the quality, z does. Rate control codes one image at several qualities, so the
analysis is run as two sessions cut from the one verified model: g_a (x -> y, shallow) once per
tile, h_a (y, gain -> z) once per tile and quality. The cut keeps the original nodes, weights and
opset, so the two sessions compute exactly what the whole graph computes (tests/test_rate.py checks
z bit for bit against the uncut graph).

Only the protobuf wire format is needed: a ModelProto's graph (field 7) holds nodes (1),
initializers (5), inputs (11) and outputs (12); a node lists its inputs (1) and outputs (2), a
tensor and a value-info their names (8 and 1). Fields are copied byte for byte; only the node,
initializer, input and output lists are filtered.
"""
from remac.bitstream.errors import ModelError

MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT = 1, 5, 11, 12
NODE_INPUT, NODE_OUTPUT = 1, 2
TENSOR_NAME, VALUE_INFO_NAME = 8, 1


def _varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def fields(buf: memoryview):
    """Top-level fields of a protobuf message -> (number, raw bytes of the whole field, payload of a
    length-delimited field or None), as views of `buf` (no copies: the weights are megabytes)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = None
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            payload = buf[pos:pos + n]
            pos += n
        else:
            raise ModelError(f"ONNX model: unexpected protobuf wire type {wire}")
        if pos > len(buf):
            raise ModelError("ONNX model: truncated protobuf")
        yield number, buf[start:pos], payload


def _field(number: int, payload) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def _names(message: memoryview, number: int) -> list:
    return [str(p, "utf-8") for n, _, p in fields(message) if n == number]


def extract(model: bytes, inputs, outputs) -> bytes:
    """The sub-model of `model` (serialized ONNX) that computes `outputs` from `inputs` (names of
    graph inputs, or of intermediate tensors that are also graph outputs, such as y)."""
    return cut(model, [(inputs, outputs)])[0]


def cut(model: bytes, parts) -> list:
    """[extract(model, inputs, outputs) for (inputs, outputs) in parts], the model parsed once."""
    model = memoryview(model)
    graph = next((p for n, _, p in fields(model) if n == MODEL_GRAPH), None)
    if graph is None:
        raise ModelError("ONNX model has no graph")
    items = [(n, raw, p, _names(p, TENSOR_NAME)[0] if n == GRAPH_INITIALIZER else None) for n, raw, p in fields(graph)]
    nodes = [(raw, _names(p, NODE_INPUT), _names(p, NODE_OUTPUT)) for n, raw, p, _ in items if n == GRAPH_NODE]
    producer = {name: i for i, (_, _, outs) in enumerate(nodes) for name in outs}
    declared = {}
    for n, _, p, _ in items:
        if n in (GRAPH_INPUT, GRAPH_OUTPUT):
            declared.setdefault(_names(p, VALUE_INFO_NAME)[0], p)
    return [_sub_model(model, items, nodes, producer, declared, inputs, outputs) for inputs, outputs in parts]


def _sub_model(model, items, nodes, producer, declared, inputs, outputs) -> bytes:
    missing = [name for name in (*inputs, *outputs) if name not in declared]
    if missing:
        raise ModelError(f"ONNX model declares no input or output {', '.join(missing)}")
    keep, used, todo = set(), set(), list(outputs)
    while todo:                             # walk back from the outputs, stopping at the inputs
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        if name not in inputs and name in producer:
            keep.add(producer[name])
            todo += [x for x in nodes[producer[name]][1] if x]
    body = bytearray()
    for n, raw, _, initializer in items:
        if n in (GRAPH_NODE, GRAPH_INPUT, GRAPH_OUTPUT) or (n == GRAPH_INITIALIZER and initializer not in used):
            continue
        body += raw
    body += b"".join(raw for i, (raw, _, _) in enumerate(nodes) if i in keep)
    body += b"".join(_field(GRAPH_INPUT, declared[name]) for name in inputs)
    body += b"".join(_field(GRAPH_OUTPUT, declared[name]) for name in outputs)
    return b"".join(_field(MODEL_GRAPH, bytes(body)) if n == MODEL_GRAPH else raw for n, raw, _ in fields(model))
