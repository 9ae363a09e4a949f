package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/source"
)

// fetchFlags tune how registry blobs are downloaded (source.Options). Zero
// values keep pkg/source's defaults; Resolve bounds the rest and names the
// field it refuses.
type fetchFlags struct {
	connections int
	chunkSize   quantityFlag
	threshold   quantityFlag
	retries     int
}

func (f *fetchFlags) register(fs *pflag.FlagSet) {
	f.threshold.off = -1 // source.Options: a negative threshold never fetches in ranges
	fs.IntVar(&f.connections, "fetch-connections", 0, "parallel HTTP range requests per large blob, 1-16 (default 4)")
	fs.Var(&f.chunkSize, "fetch-chunk-size", "size of each range request, 1Mi-256Mi (default 8Mi); connections × chunk size bounds one blob's buffers")
	fs.Var(&f.threshold, "fetch-range-threshold", "blobs at least this large are fetched in parallel ranges, smaller ones in one request (default 64Mi; off: never)")
	fs.IntVar(&f.retries, "fetch-retries", 0, "times one request is resumed from the byte it reached after its connection dropped (default 5; -1: never)")
}

func (f *fetchFlags) apply(o *source.Options) {
	o.RangeConnections = f.connections
	o.RangeChunkSize = f.chunkSize.bytes
	o.RangeThreshold = f.threshold.bytes
	o.FetchRetries = f.retries
}

// quantityFlag is a byte count written as a Kubernetes quantity (8Mi);
// where off is set, the word "off" stands for it.
type quantityFlag struct {
	bytes int64
	off   int64 // the value "off" means; 0: "off" is not accepted
	text  string
}

func (q *quantityFlag) Set(s string) error {
	if s == "off" && q.off != 0 {
		q.bytes, q.text = q.off, s
		return nil
	}
	v, err := resource.ParseQuantity(s)
	if err != nil || v.Sign() <= 0 {
		return fmt.Errorf("want a positive quantity such as 8Mi")
	}
	q.bytes, q.text = v.Value(), s
	return nil
}

func (q *quantityFlag) String() string { return q.text }

func (q *quantityFlag) Type() string { return "quantity" }
