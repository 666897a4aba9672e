//! Capabilities: parse and format every kind of Tahoe cap.
