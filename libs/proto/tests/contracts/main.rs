//! Checks the compiled contracts themselves: the descriptor set served for
//! reflection, the service and RPC lists, and the wire rules of common.proto.

mod descriptors;
mod served;
mod wire_rules;
