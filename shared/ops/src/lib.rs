//! Operations, for sysadmins: the placement file (which host runs what), the files
//! each host gets from it, deploy over ssh, and doctor's diagnosis of every host.
//! `scripts/deploy` and `scripts/doctor` run the `flotilla-ops` binary; the host side
//! of each step is `scripts/flotilla-host`.

pub mod deploy;
pub mod doctor;
pub mod placement;
pub mod release;
pub mod render;
