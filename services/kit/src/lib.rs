//! The delivery machinery and service plumbing shared by order, invoicing and shipping.
