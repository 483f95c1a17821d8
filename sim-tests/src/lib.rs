//! Whole-network turmoil simulations of the real shell code with injected database and
//! network faults. The shell's socket already sits behind `zone_shell::socket::DatagramSocket`
//! so turmoil's UDP socket can stand in; the scenarios land with the persistence work (hot and
//! cold stores, spool), which they exist to check.
