//go:build cgo

package privdrop

const cgoEnabled = true
