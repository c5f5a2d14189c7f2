//! The router over real sockets: clients and in-process backends on loopback.

mod balancing;
mod grpc;
mod limits;
mod private;
mod protocols;
mod py;
mod routing;
mod timeouts;
mod tls;
