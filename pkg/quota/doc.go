// Package quota bounds what a volume's writable upper may hold, by one of
// two mechanisms, chosen once per node:
//
//   - project quotas (XFS mounted prjquota, ext4 with -O project,quota
//     mounted prjquota): the upper and work directories get a project id
//     of their own, inherited by everything created below them, and the
//     limit is set with quotactl;
//   - a filesystem image (the fallback, where the kernel or filesystem has
//     no project quotas): a sparse file holding an ext4 filesystem of the
//     volume's size, attached to a loop device and mounted under the
//     volume's directory, with the upper and work directories inside it.
//
// The package computes and makes these; which volume gets which is the
// layer store's business.
package quota
