//! A plugin for a contract version the host does not implement.

wit_bindgen::generate!({
    inline: "
        package fungi:plugin@0.0.9;
        interface scalar {
            resource scalar-function {
                create: static func(name: string) -> scalar-function;
                call: func(args: list<u8>) -> list<u8>;
            }
        }
        world scalar-udf {
            export scalar;
        }
    ",
    world: "fungi:plugin/scalar-udf@0.0.9",
});

use exports::fungi::plugin::scalar;

struct Old;

impl scalar::Guest for Old {
    type ScalarFunction = Func;
}

struct Func;

impl scalar::GuestScalarFunction for Func {
    fn create(_name: String) -> scalar::ScalarFunction {
        scalar::ScalarFunction::new(Func)
    }
    fn call(&self, args: Vec<u8>) -> Vec<u8> {
        args
    }
}

export!(Old);
