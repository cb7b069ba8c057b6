//! Making the kernel match a [`crate::plan::NodePlan`].
