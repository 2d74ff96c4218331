"""FerrisStreams' worker for a function written in Python (CREATE FUNCTION ... LANGUAGE python).

The engine starts one per function, `python -c <this file> NAME SHAPE`, and speaks to it over
its stdin and stdout in frames: a little-endian u32 length, then that many bytes. The first
frame is the function's code; each next one an Arrow IPC stream of one batch, the arguments as
its columns. SHAPE `scalar`: the function is called once on the columns and returns one value
per row. SHAPE `aggregate`: each row is one group, each column a list of the group's values;
the function is called once per row on those lists' values and returns the group's value.
Each answer is a status byte (0 ok, 1 error) and a frame: the result as an Arrow IPC stream of
one column, or the error's text. An empty frame ends the worker.
"""

import struct
import sys
import traceback

out = sys.stdout.buffer
# What the function prints goes to the server's log, not into the answers.
sys.stdout = sys.stderr


def read_frame():
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        return None
    (length,) = struct.unpack("<I", head)
    return sys.stdin.buffer.read(length)


def answer(status, payload):
    out.write(bytes([status]) + struct.pack("<I", len(payload)) + payload)
    out.flush()


def scalar(function, name, args, rows):
    result = function(*args)
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    if not isinstance(result, pa.Array):
        result = pa.array(result)
    if len(result) != rows:
        raise ValueError(f"{name} returned {len(result)} values for {rows} rows")
    return result


def aggregate(function, name, args, rows):
    results = []
    for row in range(rows):
        result = function(*[arg[row].values for arg in args])
        results.append(result.as_py() if isinstance(result, pa.Scalar) else result)
    return pa.array(results)


def main():
    global pa
    name, shape = sys.argv[1], sys.argv[2]
    call = scalar if shape == "scalar" else aggregate
    code = read_frame()
    try:
        import pyarrow as pa

        namespace = {"__name__": "ferris_function"}
        exec(compile(code.decode(), f"<function {name}>", "exec"), namespace)
        function = namespace.get(name)
        if not callable(function):
            raise NameError(f"the code defines no function named {name}")
    except BaseException:
        answer(1, traceback.format_exc(limit=-3).encode())
        return
    answer(0, b"")
    while True:
        frame = read_frame()
        if not frame:
            return
        try:
            batch = pa.ipc.open_stream(frame).read_all()
            args = [batch.column(i).combine_chunks() for i in range(batch.num_columns)]
            result = call(function, name, args, batch.num_rows)
            table = pa.table({"result": result})
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            answer(0, sink.getvalue().to_pybytes())
        except BaseException:
            answer(1, traceback.format_exc(limit=-3).encode())


main()
