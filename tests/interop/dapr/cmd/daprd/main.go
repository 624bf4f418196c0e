// Command daprd is Dapr v1.16.0's own sidecar (cmd/daprd/app.Run), built with
// -tags stablecomponents, plus the alpha `sqlite` name resolver, which that tag leaves out
// (Dapr registers it only under allcomponents, whose modules the Go proxy here refuses).
package main

import (
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
)

func main() {
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
	app.Run()
}
