//! Debian packages the tests need: installed with apt-get when running as root on Debian.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{notice, ProvisionLock};

/// Makes sure the Debian package `package` is there, judged by `present`: when it is not, and
/// this process runs as root on a system with apt-get, installs it (`apt-get install`, and
/// `apt-get update` first if the package lists do not know it yet), saying so on stderr.
/// Returns whether `present` holds afterwards; elsewhere (not root, no apt-get) it returns
/// `false` without trying, and the caller decides whether that is a skip or a failure.
///
/// The install runs under [`ProvisionLock`], so parallel tests install a package once.
pub fn debian_package(package: &str, present: impl Fn() -> bool) -> bool {
    if present() {
        return true;
    }
    let _lock = ProvisionLock::acquire();
    if present() {
        return true;
    }
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        return false;
    }
    notice(&format!(
        "installing Debian's {package} (`apt-get install -y {package}`, first use only)"
    ));
    if !apt_get(&["install", "-y", "-q", package]) {
        apt_get(&["update", "-q"]);
        apt_get(&["install", "-y", "-q", package]);
    }
    present()
}

/// Whether this process runs as root (uid 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs apt-get non-interactively with its progress output discarded; whether it succeeded.
fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
