//! A Vulkan driver for the CubeCL tests: Mesa's lavapipe, a CPU implementation of Vulkan.

use std::path::Path;

use crate::debian::debian_package;

/// Folders where the Vulkan loader looks for installable client drivers (ICD manifests).
const ICD_DIRS: [&str; 3] = [
    "/usr/share/vulkan/icd.d",
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
];

/// Makes sure a Vulkan CPU driver (lavapipe) is installed, so Burn's wgpu backend finds an
/// adapter on a machine without a GPU. Installs Debian's `mesa-vulkan-drivers` when it is
/// missing and this runs as root on Debian (see [`debian_package`]). Returns whether the
/// lavapipe driver's manifest is there afterwards; the tests then probe wgpu itself, and
/// without a driver they skip (or fail under `TB_REQUIRE_WGPU=1`).
pub fn vulkan_cpu_driver() -> bool {
    debian_package("mesa-vulkan-drivers", lavapipe_installed)
}

/// Whether a lavapipe ICD manifest (`lvp_icd.*.json`) is installed.
fn lavapipe_installed() -> bool {
    ICD_DIRS
        .iter()
        .any(|dir| lavapipe_manifest_in(Path::new(dir)))
}

/// Whether `dir` holds a lavapipe ICD manifest (`lvp_icd.x86_64.json` and the like).
fn lavapipe_manifest_in(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("lvp_icd") && name.ends_with(".json")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::lavapipe_manifest_in;

    #[test]
    fn finds_only_lavapipe_manifests() {
        let dir = std::env::temp_dir().join(format!("tb-icd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!lavapipe_manifest_in(&dir.join("missing")));
        std::fs::write(dir.join("radeon_icd.x86_64.json"), "{}").unwrap();
        std::fs::write(dir.join("lvp_icd.x86_64.json.bak"), "{}").unwrap();
        assert!(!lavapipe_manifest_in(&dir));
        std::fs::write(dir.join("lvp_icd.x86_64.json"), "{}").unwrap();
        assert!(lavapipe_manifest_in(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
