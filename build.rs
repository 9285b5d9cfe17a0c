//! Makes the binary find libtorch by itself: torch-sys reports the libtorch folder it linked
//! against (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"`), and we record it as an rpath, so no
//! `LD_LIBRARY_PATH` is needed. libtorch_cuda is linked with `--no-as-needed` when present, because
//! nothing references its symbols directly and the linker would otherwise drop it, leaving CUDA
//! invisible at run time.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // The venv's python, for `boxwalk models import` (it converts pickled checkpoints with torch).
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    if let Ok(venv) = std::env::var("VIRTUAL_ENV") {
        println!("cargo:rustc-env=BOXWALK_BUILD_PYTHON={venv}/bin/python");
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
}
