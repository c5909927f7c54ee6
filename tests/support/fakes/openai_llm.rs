//! Scaffold: being implemented.
