//! Generated gRPC/protobuf code for the contracts in `proto/grodt/v1`, plus the encoded file descriptor set for server reflection.
