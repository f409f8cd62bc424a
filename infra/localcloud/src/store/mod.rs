//! Persistence of the local AWS endpoint under a state directory.
