//! The router over real sockets: clients and in-process backends on loopback.

mod balancing;
mod limits;
mod private;
mod protocols;
mod routing;
mod tls;
