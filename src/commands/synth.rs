//! `boxwalk synth`.

use super::Error;
use crate::cli::SynthArgs;
use crate::config::UsageError;
use crate::exit::Exit;

pub fn synth(a: SynthArgs) -> Result<Exit, Error> {
    if a.n == 0 || a.width < 32 || a.height < 32 {
        return Err(UsageError("synth needs --n >= 1 and scenes of at least 32×32".into()).into());
    }
    let opts =
        crate::synth::SynthOptions { n: a.n, seed: a.seed, width: a.width, height: a.height, ..Default::default() };
    let ds = crate::synth::write_set(&opts, &a.out)?;
    println!(
        "boxwalk: wrote {} scenes with {} objects to {} (annotations.json, images/, crops/, scenes/)",
        ds.images.len(),
        ds.annotations.len(),
        a.out.display()
    );
    Ok(Exit::Ok)
}
