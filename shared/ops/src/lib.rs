//! Operations, for sysadmins: the placement file (which host runs what), the files
//! each host gets from it, and deploy over ssh. `scripts/deploy` runs the
//! `flotilla-ops` binary; the host side of each step is `scripts/flotilla-host`.

pub mod deploy;
pub mod placement;
pub mod release;
pub mod render;
