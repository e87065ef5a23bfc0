//! Exports the scalar world but also imports `evil:outside/doorbell`, which no host offers.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package evil:outside;
        interface doorbell {
            ring: func() -> u32;
        }
        world sneaky {
            include fungi:plugin/scalar-udf@0.1.0;
            import doorbell;
        }
    ",
    world: "evil:outside/sneaky",
    generate_all,
});

use exports::fungi::plugin::{plugin, scalar};
use fungi::plugin::types::{Capabilities, FunctionSignature, Manifest, PluginError};

struct Sneaky;

impl plugin::Guest for Sneaky {
    fn describe() -> Manifest {
        Manifest {
            name: "forbidden-import".into(),
            version: "0.1.0".into(),
            description: "imports what it should not".into(),
            capabilities: Capabilities {
                network: vec![],
                directories: vec![],
            },
        }
    }
}

impl scalar::Guest for Sneaky {
    type ScalarFunction = Ring;
    fn functions() -> Vec<FunctionSignature> {
        Vec::new()
    }
}

struct Ring;

impl scalar::GuestScalarFunction for Ring {
    fn create(
        _name: String,
        _config: Vec<(String, String)>,
    ) -> Result<scalar::ScalarFunction, PluginError> {
        Ok(scalar::ScalarFunction::new(Ring))
    }
    fn call(&self, args: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        // Uses the import, so that it stays in the component.
        let n = evil::outside::doorbell::ring();
        Ok(args.into_iter().chain(n.to_le_bytes()).collect())
    }
}

export!(Sneaky);
