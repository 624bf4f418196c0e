package interop

import (
	"sort"

	internalv1pb "github.com/dapr/dapr/pkg/proto/internals/v1"
)

// StreamChunk is daprd's StreamBufferSize (2 << 10): the payload chunk size on the wire.
const StreamChunk = 2 << 10

// HeadersToMap turns map<string, ListStringValue> into a JSON-friendly map.
func HeadersToMap(m map[string]*internalv1pb.ListStringValue) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = append([]string{}, v.GetValues()...)
	}
	return out
}

// MapToHeaders is the inverse of HeadersToMap.
func MapToHeaders(m map[string][]string) map[string]*internalv1pb.ListStringValue {
	out := make(map[string]*internalv1pb.ListStringValue, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out[k] = &internalv1pb.ListStringValue{Values: m[k]}
	}
	return out
}
