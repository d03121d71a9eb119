//! Image service specs, modelled on critest's `pkg/validate/image.go` plus the
//! remove / filter / error cases kubelet relies on. Images are critest's test
//! images, served by the registry given with `--registry` under
//! `k8s-staging-cri-tools/`.
//!
//! Every spec first removes the images it is about to pull (as critest does),
//! so a leftover from an earlier run does not change repo_tags.

use std::time::{Duration, Instant};

use k8s_cri::v1::{FilesystemUsage, Image, ImageFsInfoRequest};
use tonic::Code;

use super::{Ctx, Spec, ensure, expect_eq, rpc_err, spec};

pub fn specs() -> Vec<Spec> {
    vec![
        spec!(registry "image/pull-by-tag", pull_by_tag),
        spec!(registry "image/pull-without-tag", pull_without_tag),
        spec!(registry "image/pull-by-digest", pull_by_digest),
        spec!(registry "image/pull-by-tag-and-digest", pull_by_tag_and_digest),
        spec!(registry "image/status-all-references", status_all_references),
        spec!("image/status-missing", status_missing),
        spec!(registry "image/list-different-images", list_different_images),
        spec!(registry "image/list-same-image-tags", list_same_image_tags),
        spec!(registry "image/list-filter", list_filter),
        spec!(registry "image/remove-by-id", remove_by_id),
        spec!(registry "image/remove-by-tag", remove_by_tag),
        spec!(registry "image/remove-by-digest", remove_by_digest),
        spec!(registry "image/remove-one-tag-untags", remove_one_tag_untags),
        spec!(registry "image/user-uid", user_uid),
        spec!(registry "image/user-username", user_username),
        spec!(registry "image/user-uid-group", user_uid_group),
        spec!(registry "image/user-username-group", user_username_group),
        spec!(registry "image/user-predefined-group", user_predefined_group),
        spec!(registry "image/pull-nonexistent", pull_nonexistent),
        spec!("image/pull-invalid-reference", pull_invalid_reference),
        spec!(registry "image/fs-info", fs_info),
    ]
}

/// The repository part of a reference: without `:tag` and `@digest`.
fn repo_of(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// Removes any earlier copy of `image`, pulls it, and checks the basics every
/// pull must satisfy: ImageStatus finds it, id and size are set, and
/// PullImageResponse.image_ref equals ImageStatus id.
async fn fresh_pull(ctx: &Ctx, image: &str) -> Result<Image, String> {
    ctx.remove_image(image).await?;
    let image_ref = ctx.pull(image).await?;
    let img = ctx.status_found(image).await?;
    ensure(!img.id.is_empty(), || {
        format!("ImageStatus {image}: empty id")
    })?;
    ensure(img.size > 0, || format!("ImageStatus {image}: size 0"))?;
    expect_eq(
        &format!("PullImage {image}: image_ref vs ImageStatus id"),
        &image_ref,
        &img.id,
    )?;
    Ok(img)
}

/// critest's testRemoveImage: remove by id, then ImageStatus finds nothing.
async fn remove_and_check(ctx: &Ctx, image: &str) -> Result<(), String> {
    ctx.remove_image(image).await?;
    match ctx.status(image).await? {
        None => Ok(()),
        Some(img) => Err(format!(
            "{image} still present after RemoveImage {}",
            img.id
        )),
    }
}

/// Pull `name:tag`: repo_tags is exactly the reference, repo_digests exactly
/// `repo@<digest the registry serves for the tag>`.
async fn pull_tagged(ctx: &Ctx, name: &str, tag: &str, reference: &str) -> Result<(), String> {
    let digest = ctx.registry_digest(name, tag).await?;
    let img = fresh_pull(ctx, reference).await?;
    expect_eq(
        "repo_tags",
        &img.repo_tags,
        &vec![format!("{}:{tag}", repo_of(reference))],
    )?;
    expect_eq(
        "repo_digests",
        &img.repo_digests,
        &vec![format!("{}@{digest}", repo_of(reference))],
    )?;
    remove_and_check(ctx, reference).await
}

/// critest "public image with tag should be pulled and removed".
async fn pull_by_tag(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-tag:test")?;
    pull_tagged(ctx, "test-image-tag", "test", &image).await
}

/// critest "public image without tag should be pulled and removed": the
/// runtime defaults the tag to `latest` in repo_tags.
async fn pull_without_tag(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-latest")?;
    pull_tagged(ctx, "test-image-latest", "latest", &image).await
}

/// critest "public image with digest should be pulled and removed": no
/// repo_tags, repo_digests is exactly the reference.
async fn pull_by_digest(ctx: &Ctx) -> Result<(), String> {
    let digest = ctx.registry_digest("test-image-2", "latest").await?;
    let image = format!("{}@{digest}", ctx.test_image("test-image-2")?);
    let img = fresh_pull(ctx, &image).await?;
    expect_eq("repo_tags", &img.repo_tags, &Vec::new())?;
    expect_eq("repo_digests", &img.repo_digests, &vec![image.clone()])?;
    remove_and_check(ctx, &image).await
}

/// `name:tag@digest`: the digest decides what is pulled; ImageStatus finds the
/// image by that reference and repo_digests is `repo@digest`. The tag may be
/// dropped (containerd's reference normalisation drops it, as docker's does) or
/// kept; both are accepted.
async fn pull_by_tag_and_digest(ctx: &Ctx) -> Result<(), String> {
    let digest = ctx.registry_digest("test-image-3", "latest").await?;
    let repo = ctx.test_image("test-image-3")?;
    let image = format!("{repo}:latest@{digest}");
    let img = fresh_pull(ctx, &image).await?;
    expect_eq(
        "repo_digests",
        &img.repo_digests,
        &vec![format!("{repo}@{digest}")],
    )?;
    let tag = format!("{repo}:latest");
    ensure(
        img.repo_tags.is_empty() || img.repo_tags == [tag.clone()],
        || format!("repo_tags {:?}, want [] or [{tag:?}]", img.repo_tags),
    )?;
    remove_and_check(ctx, &image).await
}

/// critest "image status should support all kinds of references": ImageStatus
/// by id, by each repo tag and by each repo digest returns the same image.
async fn status_all_references(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-tag:all")?;
    let img = fresh_pull(ctx, &image).await?;
    let refs = std::iter::once(&img.id)
        .chain(&img.repo_tags)
        .chain(&img.repo_digests);
    for reference in refs {
        let other = ctx.status_found(reference).await?;
        expect_eq(&format!("ImageStatus {reference}"), &other, &img)?;
    }
    remove_and_check(ctx, &image).await
}

/// ImageStatus of an image the runtime does not have is an empty response,
/// not an error (kubelet relies on this to decide to pull).
async fn status_missing(ctx: &Ctx) -> Result<(), String> {
    let missing = [
        format!("localhost/strata-conformance/missing-{}:none", ctx.prefix),
        format!("sha256:{}", "0".repeat(64)),
    ];
    for image in &missing {
        if let Some(img) = ctx.status(image).await? {
            return Err(format!("ImageStatus {image}: got {img:?}, want no image"));
        }
    }
    Ok(())
}

fn find<'a>(images: &'a [Image], id: &str) -> Result<&'a Image, String> {
    images
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| format!("ListImages has no image {id}"))
}

/// critest "listImage should get exactly 3 image in the result list": three
/// distinct images, each listed with exactly its one tag.
async fn list_different_images(ctx: &Ctx) -> Result<(), String> {
    let mut ids = Vec::new();
    let mut refs = Vec::new();
    for name in [
        "test-image-1:latest",
        "test-image-2:latest",
        "test-image-3:latest",
    ] {
        let image = ctx.test_image(name)?;
        ids.push(fresh_pull(ctx, &image).await?.id);
        refs.push(image);
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    expect_eq("distinct image ids", &distinct.len(), &3)?;
    let listed = ctx.list(None).await?;
    for (id, image) in ids.iter().zip(&refs) {
        let img = find(&listed, id)?;
        expect_eq(
            &format!("listed repo_tags of {id}"),
            &img.repo_tags,
            &vec![image.clone()],
        )?;
        ensure(img.size > 0, || format!("listed {id}: size 0"))?;
        ensure(!img.repo_digests.is_empty(), || {
            format!("listed {id}: no repo_digests")
        })?;
    }
    Ok(())
}

fn tags_refs(ctx: &Ctx) -> Result<Vec<String>, String> {
    ["1", "2", "3"]
        .iter()
        .map(|t| ctx.test_image(&format!("test-image-tags:{t}")))
        .collect()
}

/// critest "listImage should get exactly 3 repoTags in the result image": one
/// image pulled under three tags is listed once with all three.
async fn list_same_image_tags(ctx: &Ctx) -> Result<(), String> {
    let refs = tags_refs(ctx)?;
    let mut ids = Vec::new();
    for image in &refs {
        ids.push(fresh_pull(ctx, image).await?.id);
    }
    ids.dedup();
    expect_eq("image ids of the three tags", &ids.len(), &1)?;
    let listed = ctx.list(None).await?;
    let img = find(&listed, &ids[0])?;
    let mut tags = img.repo_tags.clone();
    tags.sort();
    expect_eq("listed repo_tags", &tags, &refs)?;
    let count = listed.iter().filter(|i| i.id == ids[0]).count();
    expect_eq("times the image is listed", &count, &1)
}

/// ListImages with an image filter returns the filtered image and not others.
/// containerd 1.6 ignores the filter (lists everything): accepted for it.
async fn list_filter(ctx: &Ctx) -> Result<(), String> {
    let one = ctx.test_image("test-image-1:latest")?;
    let two = ctx.test_image("test-image-2:latest")?;
    let id_one = fresh_pull(ctx, &one).await?.id;
    let id_two = fresh_pull(ctx, &two).await?.id;
    let listed = ctx.list(Some(&one)).await?;
    find(&listed, &id_one)?;
    if listed.iter().any(|i| i.id == id_two)
        && !ctx.known_deviation("containerd", "ListImages ignores ImageFilter")
    {
        return Err(format!("ListImages filtered by {one} also lists {two}"));
    }
    Ok(())
}

/// Removal must be idempotent: removing what is gone is not an error.
async fn check_gone_and_idempotent(
    ctx: &Ctx,
    removed_by: &str,
    refs: &[&str],
) -> Result<(), String> {
    for r in refs {
        if let Some(img) = ctx.status(r).await? {
            return Err(format!(
                "after RemoveImage {removed_by}: ImageStatus {r} still finds {}",
                img.id
            ));
        }
    }
    for r in refs {
        ctx.remove(r)
            .await
            .map_err(|e| format!("removing again: {e}"))?;
    }
    Ok(())
}

/// RemoveImage by image id removes the image; again is not an error.
async fn remove_by_id(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-1:latest")?;
    let id = fresh_pull(ctx, &image).await?.id;
    ctx.remove(&id).await?;
    check_gone_and_idempotent(ctx, &id, &[&id, &image]).await
}

/// RemoveImage by its only tag removes the image; again is not an error.
async fn remove_by_tag(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-2:latest")?;
    let id = fresh_pull(ctx, &image).await?.id;
    ctx.remove(&image).await?;
    check_gone_and_idempotent(ctx, &image, &[&image, &id]).await
}

/// RemoveImage by digest of an image pulled by digest removes it; again is not
/// an error.
async fn remove_by_digest(ctx: &Ctx) -> Result<(), String> {
    let digest = ctx.registry_digest("test-image-3", "latest").await?;
    let image = format!("{}@{digest}", ctx.test_image("test-image-3")?);
    let id = fresh_pull(ctx, &image).await?.id;
    ctx.remove(&image).await?;
    check_gone_and_idempotent(ctx, &image, &[&image, &id]).await
}

/// RemoveImage by one of three tags of one image only untags it (as docker
/// and CRI-O do): the other two tags still resolve and are listed.
/// containerd 1.6 deletes every reference of the image whichever name is
/// given (kubelet always removes by id, so this is a legitimate difference).
async fn remove_one_tag_untags(ctx: &Ctx) -> Result<(), String> {
    let refs = tags_refs(ctx)?;
    let mut id = String::new();
    for image in &refs {
        id = fresh_pull(ctx, image).await?.id;
    }
    ctx.remove(&refs[0]).await?;
    if let Some(img) = ctx.status(&refs[0]).await? {
        return Err(format!(
            "after RemoveImage {}: still resolves to {}",
            refs[0], img.id
        ));
    }
    let Some(img) = ctx.status(&refs[1]).await? else {
        if ctx.known_deviation(
            "containerd",
            "RemoveImage by tag removes all tags of the image",
        ) {
            return Ok(());
        }
        return Err(format!(
            "after RemoveImage {}: {} is gone too",
            refs[0], refs[1]
        ));
    };
    expect_eq("image id of the remaining tags", &img.id, &id)?;
    let mut tags = img.repo_tags.clone();
    tags.sort();
    expect_eq("remaining repo_tags", &tags, &refs[1..].to_vec())?;
    let listed = ctx.list(None).await?;
    let mut tags = find(&listed, &id)?.repo_tags.clone();
    tags.sort();
    expect_eq("listed remaining repo_tags", &tags, &refs[1..].to_vec())
}

/// critest "image status get image fields should not have Uid|Username
/// empty": `uid` is compared like critest's GetUid().GetValue() (unset = 0).
async fn check_user(ctx: &Ctx, name: &str, uid: i64, username: &str) -> Result<(), String> {
    let image = ctx.test_image(name)?;
    let img = fresh_pull(ctx, &image).await?;
    let got_uid = img.uid.as_ref().map_or(0, |u| u.value);
    expect_eq(&format!("{name} uid"), &got_uid, &uid)?;
    expect_eq(
        &format!("{name} username"),
        &img.username.as_str(),
        &username,
    )?;
    if uid != 0 {
        ensure(img.uid.is_some(), || format!("{name}: uid unset"))?;
    }
    Ok(())
}

/// USER 1002.
async fn user_uid(ctx: &Ctx) -> Result<(), String> {
    check_user(ctx, "test-image-user-uid", 1002, "").await
}

/// USER www-data: username, no uid.
async fn user_username(ctx: &Ctx) -> Result<(), String> {
    check_user(ctx, "test-image-user-username", 0, "www-data").await
}

/// USER 1003:1004: uid 1003.
async fn user_uid_group(ctx: &Ctx) -> Result<(), String> {
    check_user(ctx, "test-image-user-uid-group", 1003, "").await
}

/// USER www-data:1004: username www-data.
async fn user_username_group(ctx: &Ctx) -> Result<(), String> {
    check_user(ctx, "test-image-user-username-group", 0, "www-data").await
}

/// A user in a predefined group (gid 50000): uid 1000.
async fn user_predefined_group(ctx: &Ctx) -> Result<(), String> {
    check_user(ctx, "test-image-predefined-group", 1000, "").await
}

/// Pulling an image the registry does not have fails (any non-OK code), and
/// leaves no image behind.
async fn pull_nonexistent(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image(&format!("does-not-exist-{}:latest", ctx.prefix))?;
    if let Ok(image_ref) = ctx.try_pull(&image).await {
        return Err(format!("PullImage {image} succeeded with {image_ref}"));
    }
    match ctx.status(&image).await? {
        None => Ok(()),
        Some(img) => Err(format!("failed pull left image {}", img.id)),
    }
}

/// A reference that is not a valid image name (upper case in the repository)
/// is rejected with InvalidArgument. containerd 1.6 rejects it with Unknown
/// (its CRI plugin returns the parse error unwrapped): accepted for it.
async fn pull_invalid_reference(ctx: &Ctx) -> Result<(), String> {
    let image = "UPPER/Case";
    match ctx.pull_untracked(image).await {
        Ok(image_ref) => Err(format!("PullImage {image} succeeded with {image_ref}")),
        Err(s) if s.code() == Code::InvalidArgument => Ok(()),
        Err(s)
            if ctx.known_deviation(
                "containerd",
                &format!(
                    "invalid reference rejected with {:?}, not InvalidArgument",
                    s.code()
                ),
            ) =>
        {
            Ok(())
        }
        Err(s) => Err(format!(
            "{}, want InvalidArgument",
            rpc_err(&format!("PullImage {image}"), &s)
        )),
    }
}

fn check_fs(kind: &str, fs: &[FilesystemUsage]) -> Result<u64, String> {
    ensure(!fs.is_empty(), || format!("no {kind}"))?;
    let mut used = 0;
    for f in fs {
        let mountpoint = f.fs_id.as_ref().map_or("", |id| id.mountpoint.as_str());
        ensure(!mountpoint.is_empty(), || {
            format!("{kind} entry without mountpoint: {f:?}")
        })?;
        ensure(f.timestamp > 0, || {
            format!("{kind} {mountpoint}: timestamp {}", f.timestamp)
        })?;
        let bytes = f
            .used_bytes
            .as_ref()
            .ok_or_else(|| format!("{kind} {mountpoint}: no used_bytes"))?;
        ensure(f.inodes_used.is_some(), || {
            format!("{kind} {mountpoint}: no inodes_used")
        })?;
        used += bytes.value;
    }
    Ok(used)
}

/// How long ImageFsInfo may lag behind a pull (containerd refreshes its
/// snapshot usage every 10 s).
const FS_INFO_LAG: Duration = Duration::from_secs(25);

/// ImageFsInfo after a pull: image_filesystems with a mountpoint, a timestamp,
/// inodes_used and used_bytes, which becomes > 0 within [`FS_INFO_LAG`] (a
/// delay is noted); container_filesystems likewise.
/// containerd 1.6 reports usage from a snapshot cache refreshed every 10 s, so
/// used_bytes stays 0 for a while after the first pull; and it predates
/// container_filesystems (CRI 1.29), leaving it empty: accepted for it.
async fn fs_info(ctx: &Ctx) -> Result<(), String> {
    let image = ctx.test_image("test-image-1:latest")?;
    fresh_pull(ctx, &image).await?;
    let start = Instant::now();
    let resp = loop {
        let resp = ctx
            .images()
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .map_err(|s| rpc_err("ImageFsInfo", &s))?
            .into_inner();
        if check_fs("image_filesystems", &resp.image_filesystems)? > 0 {
            break resp;
        }
        if start.elapsed() > FS_INFO_LAG {
            return Err(format!(
                "image_filesystems used_bytes still 0 {FS_INFO_LAG:?} after a pull: {:?}",
                resp.image_filesystems
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if start.elapsed() > Duration::from_secs(1) {
        ctx.note(format!(
            "image_filesystems used_bytes became > 0 only {:.1} s after the pull",
            start.elapsed().as_secs_f64()
        ));
    }
    if resp.container_filesystems.is_empty()
        && ctx.known_deviation("containerd", "ImageFsInfo has no container_filesystems")
    {
        return Ok(());
    }
    check_fs("container_filesystems", &resp.container_filesystems).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::repo_of;

    #[test]
    fn repo_of_strips_tag_and_digest() {
        assert_eq!(repo_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b");
        assert_eq!(repo_of("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
        assert_eq!(
            repo_of("127.0.0.1:5000/a/b@sha256:00"),
            "127.0.0.1:5000/a/b"
        );
        assert_eq!(repo_of("reg/a/b:t@sha256:00"), "reg/a/b");
    }
}
