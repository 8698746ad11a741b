//! Which NVIDIA GPUs this process can use: [`probe`] asks the CUDA driver through cudarc
//! (the `cuda` feature, with cudarc's dynamic loading, so Rill builds and runs on machines
//! without CUDA) and says why there are none when there are none.
//!
//! Invariants: probing never panics and never fails: a missing driver library (checked
//! before cudarc is asked anything, since cudarc panics when it cannot load it), a driver
//! that fails to initialise, or a build without the `cuda` feature all give an empty list
//! and a reason. The probe runs once per process; it reads device properties only and
//! creates no CUDA context.

use std::sync::OnceLock;

/// One GPU the driver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// The CUDA device ordinal (`/device:GPU:<ordinal>`).
    pub ordinal: usize,
    /// The product name, e.g. "NVIDIA H200".
    pub name: String,
    /// Device memory in bytes.
    pub memory_bytes: usize,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProbe {
    pub gpus: Vec<GpuInfo>,
    /// Why `gpus` is empty, when it is.
    pub why_none: Option<String>,
}

impl GpuProbe {
    fn none(why: impl Into<String>) -> GpuProbe {
        GpuProbe {
            gpus: Vec::new(),
            why_none: Some(why.into()),
        }
    }

    /// One line per GPU, or the reason there is none.
    pub fn describe(&self) -> String {
        match &self.why_none {
            Some(why) => format!("no GPU: {why}"),
            None => self
                .gpus
                .iter()
                .map(|g| {
                    format!(
                        "GPU:{} {} ({:.1} GiB, compute capability {}.{})",
                        g.ordinal,
                        g.name,
                        g.memory_bytes as f64 / (1u64 << 30) as f64,
                        g.compute_capability.0,
                        g.compute_capability.1
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The GPUs of this machine (probed once per process).
pub fn probe() -> &'static GpuProbe {
    static PROBE: OnceLock<GpuProbe> = OnceLock::new();
    PROBE.get_or_init(|| {
        // cudarc panics on a driver without a symbol it expects; that is "no GPU" too.
        std::panic::catch_unwind(probe_driver).unwrap_or_else(|_| {
            GpuProbe::none("the CUDA driver library lacks functions Rill needs (driver too old?)")
        })
    })
}

#[cfg(not(feature = "cuda"))]
fn probe_driver() -> GpuProbe {
    GpuProbe::none("Rill was built without the `cuda` feature")
}

#[cfg(feature = "cuda")]
fn probe_driver() -> GpuProbe {
    use cudarc::driver::{result, sys};

    // SAFETY: only tries to open the library by its candidate names.
    if !unsafe { sys::is_culib_present() } {
        return GpuProbe::none("the CUDA driver library (libcuda) was not found");
    }
    if let Err(e) = result::init() {
        return GpuProbe::none(format!("the CUDA driver did not initialise: {e}"));
    }
    let count = match result::device::get_count() {
        Ok(n) => usize::try_from(n).unwrap_or(0),
        Err(e) => return GpuProbe::none(format!("the CUDA driver cannot count devices: {e}")),
    };
    let info = |ordinal: usize| -> Result<GpuInfo, result::DriverError> {
        let dev = result::device::get(ordinal as i32)?;
        let attr = |a| {
            // SAFETY: `dev` was returned by `device::get`.
            unsafe { result::device::get_attribute(dev, a) }
        };
        Ok(GpuInfo {
            ordinal,
            name: result::device::get_name(dev)?,
            // SAFETY: `dev` was returned by `device::get`.
            memory_bytes: unsafe { result::device::total_mem(dev)? },
            compute_capability: (
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            ),
        })
    };
    match (0..count).map(info).collect::<Result<Vec<_>, _>>() {
        Ok(gpus) if gpus.is_empty() => GpuProbe::none("the CUDA driver reports no device"),
        Ok(gpus) => GpuProbe {
            gpus,
            why_none: None,
        },
        Err(e) => GpuProbe::none(format!("the CUDA driver cannot describe a device: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_never_panics_and_explains_an_empty_list() {
        let p = probe();
        assert_eq!(p.gpus.is_empty(), p.why_none.is_some(), "{p:?}");
        if p.gpus.is_empty() {
            eprintln!("{}", p.describe());
            assert!(p.describe().starts_with("no GPU: "));
        } else {
            for (i, g) in p.gpus.iter().enumerate() {
                assert_eq!(g.ordinal, i);
                assert!(g.memory_bytes > 0 && g.compute_capability.0 > 0, "{g:?}");
            }
        }
        #[cfg(not(feature = "cuda"))]
        assert!(p.describe().contains("`cuda` feature"), "{}", p.describe());
        assert_eq!(probe(), p, "probed once");
    }
}
