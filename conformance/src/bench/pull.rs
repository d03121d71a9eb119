//! `bench pull` and `bench pull-shared`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_cri::v1::{ImageFsInfoRequest, PullImageRequest};

use super::status::{PullCounters, pull_counters};
use super::{Target, image_size, mb_per_s, median, remove_cold};
use crate::client::Cri;
use crate::specs::image_spec;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference to pull (repeat for several images).
    #[arg(long = "image", required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullSharedArgs {
    /// The image pulled first.
    #[arg(long)]
    base: String,
    /// An image sharing layers with `--base`, pulled second.
    #[arg(long)]
    derived: String,
}

/// Times one PullImage of `image`, then asks ImageFsInfo (untimed) so that a
/// runtime whose accounting breaks after a pull shows up here.
async fn timed_pull(cri: &Cri, image: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    cri.images
        .clone()
        .pull_image(PullImageRequest {
            image: Some(image_spec(image)),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("{}: PullImage {image}", cri.endpoint))?;
    let took = start.elapsed();
    cri.images
        .clone()
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .with_context(|| format!("{}: ImageFsInfo", cri.endpoint))?;
    Ok(took)
}

/// For each image: `runs` cold pulls per endpoint, interleaved; prints the
/// median time and throughput per endpoint and the throughput ratio. The
/// images are removed at the end.
pub async fn pull(targets: &[Target], args: &PullArgs, runs: usize) -> anyhow::Result<()> {
    for image in &args.images {
        let mut times = vec![Vec::with_capacity(runs); targets.len()];
        for run in 1..=runs {
            for (t, samples) in targets.iter().zip(&mut times) {
                remove_cold(&t.cri, image).await?;
                let took = timed_pull(&t.cri, image).await?;
                eprintln!(
                    "  run {run}/{runs} {}: {:.3} s",
                    t.label,
                    took.as_secs_f64()
                );
                samples.push(took);
            }
        }
        let mut throughput = Vec::new();
        let mut sizes = Vec::new();
        for (t, samples) in targets.iter().zip(&times) {
            let size = image_size(&t.cri, image).await?;
            sizes.push(size);
            let med = median(samples);
            let mbs = mb_per_s(size, med);
            println!(
                "pull {image} {}: median {:.3} s, {mbs:.1} MB/s ({runs} runs, {size} bytes)",
                t.label,
                med.as_secs_f64()
            );
            throughput.push(mbs);
            remove_cold(&t.cri, image).await?;
        }
        // Each runtime's MB/s uses the size it reports; the ratio compares times only if the
        // sizes agree (compressed content; containerd adds the manifest's few hundred bytes).
        if let [a, b] = sizes[..]
            && a.abs_diff(b) > a.max(b) / 100
        {
            eprintln!(
                "warning: {image}: the runtimes report different sizes ({a} vs {b} bytes): \
                 the throughput ratio is not a time ratio"
            );
        }
        if let [a, b] = throughput[..] {
            let ratio = if b > 0.0 { a / b } else { f64::INFINITY };
            println!(
                "ratio {}/{} throughput: {ratio:.2}x",
                targets[0].label, targets[1].label
            );
        }
    }
    Ok(())
}

/// Cold-pulls `--base`, then `--derived` (which shares base layers), `runs`
/// times per endpoint, interleaved; prints the median time of each pull. For a
/// runtime that reports its own pull counters (strata's verbose Status), also
/// prints what the derived pull fetched by those counters (read untimed,
/// around the derived pull); other runtimes' bytes are measured by the caller
/// (at the registry). The images are removed at the end.
pub async fn pull_shared(
    targets: &[Target],
    args: &PullSharedArgs,
    runs: usize,
) -> anyhow::Result<()> {
    let mut times = vec![(Vec::new(), Vec::new()); targets.len()];
    // Per target: what the last derived pull fetched, by the runtime's counters.
    let mut fetched: Vec<Option<PullCounters>> = vec![None; targets.len()];
    for run in 1..=runs {
        for ((t, (base, derived)), fetched) in targets.iter().zip(&mut times).zip(&mut fetched) {
            remove_cold(&t.cri, &args.derived).await?;
            remove_cold(&t.cri, &args.base).await?;
            let b = timed_pull(&t.cri, &args.base).await?;
            let before = pull_counters(&t.cri).await?;
            let d = timed_pull(&t.cri, &args.derived).await?;
            let after = pull_counters(&t.cri).await?;
            *fetched = before.zip(after).map(|(b, a)| PullCounters {
                bytes_fetched: a.bytes_fetched.saturating_sub(b.bytes_fetched),
                layers_fetched: a.layers_fetched.saturating_sub(b.layers_fetched),
            });
            let counted = match fetched {
                Some(f) => format!(
                    " (fetched {} bytes in {} layers)",
                    f.bytes_fetched, f.layers_fetched
                ),
                None => String::new(),
            };
            eprintln!(
                "  run {run}/{runs} {}: base {:.3} s, derived {:.3} s{counted}",
                t.label,
                b.as_secs_f64(),
                d.as_secs_f64()
            );
            base.push(b);
            derived.push(d);
        }
    }
    for ((t, (base, derived)), fetched) in targets.iter().zip(&times).zip(&fetched) {
        let base_size = image_size(&t.cri, &args.base).await?;
        let derived_size = image_size(&t.cri, &args.derived).await?;
        println!(
            "pull-shared base {} {}: median {:.3} s ({runs} runs, {base_size} bytes)",
            args.base,
            t.label,
            median(base).as_secs_f64()
        );
        println!(
            "pull-shared derived {} {}: median {:.3} s ({runs} runs, {derived_size} bytes)",
            args.derived,
            t.label,
            median(derived).as_secs_f64()
        );
        match fetched {
            Some(f) => println!(
                "pull-shared derived {} {}: fetched {} bytes in {} layers (runtime's own counters, last run)",
                args.derived, t.label, f.bytes_fetched, f.layers_fetched
            ),
            None => println!(
                "pull-shared derived {} {}: fetched bytes not reported by the runtime",
                args.derived, t.label
            ),
        }
        remove_cold(&t.cri, &args.derived).await?;
        remove_cold(&t.cri, &args.base).await?;
    }
    Ok(())
}
