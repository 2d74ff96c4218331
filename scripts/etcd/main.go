// The etcd server, for the cluster tests: built by scripts/etcd.sh install.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
