//! The actor-critic's parameters on the host, row-major, group by group in the burn module's
//! visiting order: what the host engines, the host optimizers and `bohp gradcheck` exchange.

/// [`AcParams`] and its group accessors, from the one list of its groups (name and shape, in
/// the burn module's visiting order).
macro_rules! ac_params {
    ($($name:ident: $shape:literal),* $(,)?) => {
        /// The parameter groups, row-major, laid out as the burn module's tensors, of any
        /// element type (scalars are groups of one).
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct AcGroups<T> {
            $(#[doc = $shape] pub $name: Vec<T>,)*
        }

        impl<T> AcGroups<T> {
            /// Each group made by `f` from this one's.
            pub fn map<U>(&self, mut f: impl FnMut(&[T]) -> Vec<U>) -> AcGroups<U> {
                AcGroups { $($name: f(&self.$name),)* }
            }

            /// `f` over each group with `other`'s of the same name, in order.
            pub fn zip_each<U>(&mut self, other: &AcGroups<U>, mut f: impl FnMut(&mut [T], &[U])) {
                $(f(&mut self.$name, &other.$name);)*
            }
        }

        impl AcParams {
            /// The groups' names, in [`AcParams::into_groups`]'s order.
            pub(crate) const GROUP_NAMES: [&'static str; ac_params!(@count $($name)*)] =
                [$(stringify!($name)),*];

            /// The groups, moved out, in the burn module's visiting order (for the host
            /// optimizers).
            pub fn into_groups(self) -> Vec<Vec<f64>> {
                vec![$(self.$name),*]
            }

            /// The inverse of [`AcParams::into_groups`].
            ///
            /// # Panics
            ///
            /// Panics unless there is one group per parameter.
            pub fn from_groups(groups: Vec<Vec<f64>>) -> AcParams {
                assert_eq!(groups.len(), Self::GROUP_NAMES.len(), "one group per parameter");
                let mut groups = groups.into_iter();
                AcGroups {
                    $($name: groups.next().expect("counted"),)*
                }
            }

            /// The groups, mutably, in the same order as [`AcParams::groups`].
            pub fn groups_mut(&mut self) -> Vec<(&'static str, &mut Vec<f64>)> {
                vec![$((stringify!($name), &mut self.$name)),*]
            }

            /// The groups in the burn module's visiting order, for comparisons.
            pub fn groups(&self) -> Vec<(&'static str, &Vec<f64>)> {
                vec![$((stringify!($name), &self.$name)),*]
            }
        }
    };
    (@count $($name:ident)*) => { 0 $(+ { let _ = stringify!($name); 1 })* };
}

/// The parameters in `f64`.
pub type AcParams = AcGroups<f64>;

ac_params! {
    w_in: "`[I, N]`.",
    w: "`[N, N]`.",
    b: "`[N]`.",
    alpha: "`[N, N]`.",
    w_pi: "`[N, A]`.",
    b_pi: "`[A]`.",
    w_v: "`[N]`.",
    b_v: "`[1]`.",
    w_m: "`[N]`.",
    b_m: "`[1]`.",
    fan_w: "`[N]`.",
    fan_b: "`[N]`.",
    eta: "`[1]`.",
}
