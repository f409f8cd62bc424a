//! `cargo xtask loadtest` — a fresh local cloud of the synthesized stack (release build unless `--debug`),
//! driven through collect at `--rate` for `--duration`; the report (freshness, exact counts) comes from
//! `tally_localcloud::loadtest`, run by the `tally-localcloud` binary.

use crate::dev::{exec, local_cloud};
use crate::flags::Loadtest;

impl Loadtest {
    pub fn run(self) -> anyhow::Result<()> {
        let stage = tally_pipeline::Stage::new("loadtest");
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let state = crate::target_dir()
            .join("tally-loadtest")
            .join(run_id.to_string());
        let mut run = local_cloud(&stage, &state, !self.debug)?;
        run.args(["--port", "0", "--url-port-base", "0", "--quiet"]);
        run.args([
            "--loadtest-rate",
            &self.rate.to_string(),
            "--loadtest-duration",
            &self.duration,
        ]);
        if self.json {
            run.arg("--json");
        }
        exec(run)
    }
}
