//! Netstrings: `<decimal length>:<bytes>,`.
