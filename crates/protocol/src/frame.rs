//! Request framing: placeholder until the server lands.
