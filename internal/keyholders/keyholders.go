// Package keyholders is the one list of every kind of file in which
// tencrypt stores wrapped keys (keys.Holder), for the retire check and the
// rewrap command. It is the only package that knows them all, so it may
// import every plane; nothing but commands imports it. A new container
// (fscrypt volume metadata, a Kubernetes registry's export) implements
// keys.Holder beside its format and is added here.
package keyholders

import (
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/lab"
	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
	"github.com/tencrypt/tencrypt/rest/names"
)

// Options tune the holders.
type Options struct {
	// CopyFiles rewrites tencrypt files through a temporary file even when
	// the header could be rewritten in place.
	CopyFiles bool
}

// All returns every holder. The order matters only in that the first
// holder that matches a file answers for it; their matches do not overlap.
func All(o Options) []keys.Holder {
	return []keys.Holder{
		keys.BlobHolder{},
		format.Holder{Copy: o.CopyFiles},
		names.VolumeHolder{},
		names.MetadataHolder{},
		fscrypt.Holder{},
		lab.RegistryHolder{},
	}
}
