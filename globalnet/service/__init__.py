"""Hidden services: addresses, descriptors in the DHT, access points, rendezvous."""
