//! The control plane OpenAPI document (being written).
