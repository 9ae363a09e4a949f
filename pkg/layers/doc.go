// Package layers is the node-local layer store: Docker's overlay2 layout
// under one root, layers imported from OCI image blobs and shared by every
// volume that uses the same content, and volumes composed from them.
//
// On disk, under Root/overlay2:
//
//	<diffid-hex>/diff        one layer's content, keyed by its uncompressed digest
//	<diffid-hex>/link        the layer's short id
//	<diffid-hex>/layer.json  where the layer came from and how big it is
//	l/<short id>             -> ../<dir>/diff, so mount data stays short
//	<vol>-init/{diff,link,lower}
//	<vol>/{diff,work,merged,link,lower,volume.json}
//	.staging/, .trash/       work in progress; emptied on Open
//
// Every directory appears under its final name by rename(2) only when it is
// complete, so a crash leaves either the whole thing or nothing visible.
package layers
