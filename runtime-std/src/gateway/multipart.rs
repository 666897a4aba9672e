//! A streaming multipart/form-data parser (RFC 7578) for browser form uploads.
