//! `modelcar export`: write an image out of the store for other tools.

use modelcar::image::PlatformFilter;
use modelcar::reference::Location;
use modelcar::registry::pull::PullPolicy;
use modelcar::transport;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name or store reference.
    pub image: String,
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG].
    pub dest: String,
    /// For docker-archive (one platform): which platform of a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let dest: Location = args.dest.parse()?;
    let platform: Option<PlatformFilter> = args.platform.as_deref().map(str::parse).transpose()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let name = ctx.resolve_name(&args.image)?;
    transport::export(
        &store,
        &resolved.descriptor,
        &name,
        &dest,
        platform.as_ref(),
    )?;
    ctx.note(&format!(
        "wrote {name}@{} to {dest}",
        resolved.descriptor.digest()
    ));
    Ok(())
}
