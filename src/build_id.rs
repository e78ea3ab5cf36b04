//! `carto.build_id()`: which source tree the loaded library was built from. build.rs compiles in the output of
//! scripts/build-id (a hash of the extension's source files); tests/e2e/run compares it with the tree's own, so
//! an old or foreign install is never what an end-to-end run tests.

use pgrx::prelude::*;

/// scripts/build-id of the tree this library was built from; `-pg_test` appended in a `cargo pgrx test` build.
pub const BUILD_ID: &str = env!("CARTO_FDW_BUILD_ID");

/// The build id of the loaded library (16 hex digits, or 16 hex digits and `-pg_test`).
#[pg_extern(stable, parallel_safe)]
fn build_id() -> &'static str {
    BUILD_ID
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION carto.build_id() FROM PUBLIC;
COMMENT ON FUNCTION carto.build_id() IS 'The id of the source tree the loaded carto_fdw library was built from';
"#,
    name = "carto_build_id_grants",
    requires = [build_id]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn build_id_is_the_compiled_in_tree_hash() {
        let id = Spi::get_one::<String>("SELECT carto.build_id()").unwrap().unwrap();
        assert_eq!(id, super::BUILD_ID);
        let (hash, suffix) = id.split_at(16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(suffix, "-pg_test");
    }
}
