"""The DHT: the `kademlia` package over our authenticated links, signed values only."""
