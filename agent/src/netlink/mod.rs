//! Kernel network objects through rtnetlink: namespaces, veths, addresses, routes.
