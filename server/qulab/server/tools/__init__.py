"""Every public QuLab RPC as a tool for LLM tool-calling, derived from the contract: names,
descriptions and examples from the protos and their comments (`_source`), argument schemas
from the request messages and their protovalidate rules (`_schema`), JSON arguments to
requests (`_arguments`) and answers to JSON (`_results`). `catalogue` puts them together;
`qulab.server.services.tools` serves them. Nothing here knows gRPC."""

from qulab.server.tools._arguments import from_proto_path
from qulab.server.tools._results import result_json
from qulab.server.tools.catalogue import Catalogue, ToolSpec, definition, descriptor_of, portable

__all__ = [
    "Catalogue",
    "ToolSpec",
    "definition",
    "descriptor_of",
    "from_proto_path",
    "portable",
    "result_json",
]
