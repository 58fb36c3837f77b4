"""Generated protobuf and gRPC modules for the tokenpool.v1 API.

The modules beside this file are written by `make proto`
(scripts/gen_proto.py); edit the proto, never them.
"""
