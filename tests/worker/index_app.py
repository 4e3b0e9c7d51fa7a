"""Index the function app as the Python worker does, and write what the host receives as JSON.

Run with the worker environment's Python (``.venv-worker``, Python 3.13), not the project's:

    .venv-worker/bin/python tests/worker/index_app.py OUT.json [RUNTIME_PATH]

``RUNTIME_PATH``, when given, goes first on ``sys.path``: another azure-functions-runtime
release installed there is used instead of the environment's.

It drives the worker library's own request handlers, ``worker_init_request`` (which indexes the
app: imports ``function_app.py`` and validates every function) and
``functions_metadata_request`` (the ``FunctionMetadataResponse`` the host turns into
functions), with the messages of the host-worker protocol compiled from the protocol's
``.proto`` files (``tests/worker/proto``, MIT licence there). The settings come from the
environment (``PREPOST_TRANSPORT``, ``PREPOST_SERVICEBUS_SETTLEMENT``).
"""

import asyncio
import importlib
import json
import re
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE.parent.parent


def compile_protos(into: Path) -> types.ModuleType:
    """``FunctionRpc_pb2``, compiled from the vendored protocol with grpcio-tools' protoc."""
    import grpc_tools
    from grpc_tools import protoc

    package = into / "hostprotocol"
    package.mkdir()
    source = HERE / "proto"
    files = sorted(str(path.relative_to(source)) for path in source.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{source}", f"-I{well_known}", f"--python_out={package}", *files]) != 0:
        raise RuntimeError("protoc failed on tests/worker/proto")
    for generated in package.rglob("*_pb2.py"):
        # protoc writes `from shared import ...` for `import "shared/..."`: keep it inside the
        # package, away from the app's own `shared` package.
        pattern = re.compile(r"^from (identity|shared) import", re.M)
        generated.write_text(pattern.sub(r"from hostprotocol.\1 import", generated.read_text()))
    for folder in (package, package / "identity", package / "shared"):
        (folder / "__init__.py").touch()
    sys.path.insert(0, str(into))
    return importlib.import_module("hostprotocol.FunctionRpc_pb2")


def index(protos: types.ModuleType) -> dict:
    import azure_functions_runtime
    from azure_functions_runtime import handle_event
    from azure_functions_runtime.version import VERSION
    from google.protobuf.json_format import MessageToDict

    request = types.SimpleNamespace(
        request=protos.StreamingMessage(
            worker_init_request=protos.WorkerInitRequest(function_app_directory=str(APP_DIR))
        ),
        properties={"host": "127.0.0.1", "protos": protos},
    )
    init = asyncio.run(handle_event.worker_init_request(request))
    result = {
        "runtime": VERSION,
        "runtimeFile": azure_functions_runtime.__file__,
        "init": {
            "status": protos.StatusResult.Status.Name(init.result.status),
            "exception": init.result.exception.message,
        },
        "functions": [],
    }
    if init.result.status != protos.StatusResult.Success:
        return result
    metadata = asyncio.run(handle_event.functions_metadata_request(request))
    result["metadataStatus"] = protos.StatusResult.Status.Name(metadata.result.status)
    for function in metadata.function_metadata_results:
        # Defaults printed too: a binding's direction `in` is the enum's zero value.
        described = MessageToDict(function, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        described["raw_bindings"] = [json.loads(raw) for raw in function.raw_bindings]
        result["functions"].append(described)
    return result


def main() -> None:
    out = Path(sys.argv[1])
    for path in reversed(sys.argv[2:]):
        sys.path.insert(0, path)
    sys.path.insert(0, str(APP_DIR))  # as the worker does: the app's folder first
    with tempfile.TemporaryDirectory() as scratch:
        out.write_text(json.dumps(index(compile_protos(Path(scratch))), indent=2))


if __name__ == "__main__":
    main()
